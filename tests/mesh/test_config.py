"""Configuration: defaults, MESHWRIGHT_* variables, flags over variables."""

from __future__ import annotations

import pytest

from meshwright.cli import build_parser
from meshwright.mesh.config import MeshConfig, backend_scheme


def test_environment_then_overrides() -> None:
    env = {"MESHWRIGHT_GRPC_PORT": "6000", "MESHWRIGHT_LEASE_TTL_S": "2.5", "MESHWRIGHT_HOST": ""}
    cfg = MeshConfig.from_env(env)
    assert (cfg.grpc_port, cfg.lease_ttl_s, cfg.host) == (6000, 2.5, "127.0.0.1")
    cfg = MeshConfig.from_env(env, grpc_port=7000, http_port=None)
    assert (cfg.grpc_port, cfg.http_port) == (7000, 8080)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="MESHWRIGHT_GRPC_PORT='x' is not a int"):
        MeshConfig.from_env({"MESHWRIGHT_GRPC_PORT": "x"})


def test_cli_flags_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHWRIGHT_GRPC_PORT", "6001")
    monkeypatch.setenv("MESHWRIGHT_TARGET", "mesh.example:1")
    args = build_parser().parse_args(["up"])
    assert args.grpc_port == 6001
    args = build_parser().parse_args(["up", "--grpc-port", "6002"])
    assert args.grpc_port == 6002
    args = build_parser().parse_args(["agents"])
    assert args.target == "mesh.example:1"


def test_unsupported_backend_is_a_clear_error() -> None:
    assert backend_scheme("memory://", setting="store_url", supported=("memory",)) == "memory"
    with pytest.raises(ValueError, match="store_url='redis://x:6379/0'.*supported: memory://"):
        backend_scheme("redis://x:6379/0", setting="store_url", supported=("memory",))


@pytest.mark.parametrize("key", ["²", "9" * 5000, "0", "-1", "1.5", ""])
def test_position_tokens_refuse_what_int_cannot_take(key: str) -> None:
    from meshwright.mesh.errors import InvalidArgument
    from meshwright.mesh.paging import decode_position_token, encode_page_token

    with pytest.raises(InvalidArgument) as err:
        decode_position_token(encode_page_token(key))
    assert [v.field for v in err.value.violations] == ["page_token"]
    assert decode_position_token(encode_page_token("42")) == 42


def test_economy_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshwright.cli import _store_overrides

    monkeypatch.setenv("MESHWRIGHT_IDEMPOTENCY_TTL_S", "60")
    args = build_parser().parse_args(["serve"])
    assert MeshConfig.from_env(**_store_overrides(args)).idempotency_ttl_s == 60.0
    args = build_parser().parse_args(
        ["serve", "--idempotency-ttl", "2h", "--economy-params", "p.json"]
    )
    cfg = MeshConfig.from_env(**_store_overrides(args))
    assert (cfg.idempotency_ttl_s, cfg.economy_params) == (7200.0, "p.json")
