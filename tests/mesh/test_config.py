"""Configuration: defaults, MESHWRIGHT_* variables, flags over variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshwright.cli import build_parser
from meshwright.mesh.config import MeshConfig, backend_scheme, env_value


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


def test_a_secret_comes_from_the_file_its_file_variable_names(tmp_path: Path) -> None:
    token = tmp_path / "service.token"
    token.write_text("  tok-from-file\n")
    assert env_value("token", {"MESHWRIGHT_TOKEN_FILE": str(token)}) == "tok-from-file"
    cfg = MeshConfig.from_env({"MESHWRIGHT_TOKEN_FILE": str(token)})
    assert cfg.token == "tok-from-file"
    # The variable itself wins over the file.
    both = {"MESHWRIGHT_TOKEN": "direct", "MESHWRIGHT_TOKEN_FILE": str(token)}
    assert MeshConfig.from_env(both).token == "direct"
    assert env_value("token", {}) is None
    # Only secrets read files: a _FILE variant of another setting means nothing.
    assert env_value("host", {"MESHWRIGHT_HOST_FILE": str(token)}) is None
    assert env_value("auth_hs256_secret", {"MESHWRIGHT_AUTH_HS256_SECRET_FILE": str(token)})


def test_an_unreadable_secret_file_names_the_variable_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.token"
    with pytest.raises(ValueError, match=r"MESHWRIGHT_TOKEN_FILE='.*nope\.token'"):
        MeshConfig.from_env({"MESHWRIGHT_TOKEN_FILE": str(missing)})


def test_serve_names_its_services_or_says_which_are_unknown() -> None:
    import asyncio

    from meshwright.cli import _serve

    for services, message in (
        ("", "name at least one of registry, economy, workflow, gateway"),
        (" , ", "name at least one of"),
        ("registry,gatway", "unknown gatway"),
    ):
        args = build_parser().parse_args(["serve", "--services", services])
        with pytest.raises(ValueError, match=message):
            asyncio.run(_serve(args))
    args = build_parser().parse_args(["serve", "--services", "gateway", "--no-gateway"])
    with pytest.raises(ValueError, match="--no-gateway turns it off"):
        asyncio.run(_serve(args))
