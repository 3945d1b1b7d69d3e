"""Configuration from flags and environment alike.

Every setting has a ``MESHWRIGHT_*`` environment variable; a command-line flag
wins over the variable, the variable over the default. Backends are chosen by
URL (``--store memory://`` or ``redis://host:port/db``; ``--registry memory://`` or
``consul://host:8500``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlparse

ENV_PREFIX = "MESHWRIGHT_"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshConfig:
    """Settings of a meshwright process."""

    host: str = "127.0.0.1"
    """Interface every server binds."""
    grpc_port: int = 50051
    """gRPC port of the mesh services (0 picks a free one)."""
    http_port: int = 8080
    """HTTP port of the REST gateway (0 picks a free one)."""
    registry_url: str = "memory://"
    """Registry backend: ``memory://`` (in-process) or ``consul://host:8500`` (a Consul
    agent's HTTP API, ``consuls://`` for HTTPS; every registry replica pointed at the same
    Consul serves the same agents, and the mesh's own services register there too)."""
    advertise_host: str = ""
    """Address other processes reach this one at, announced in Consul; ``host`` when empty
    (this machine's hostname when ``host`` binds every interface)."""
    consul_reannounce_s: float = 30.0
    """On Consul, how often this process checks that the Consul agent still has its
    services' registrations and puts back any it lost (an agent replaced without its data),
    in seconds; 0 announces once, at start."""
    health_check_interval_s: float = 5.0
    """How often the embedded registry probes each agent's grpc.health.v1 endpoint, in
    seconds (0: leases only, no probing); on Consul, the interval of Consul's GRPC check."""
    health_check_timeout_s: float = 2.0
    """Deadline of one health probe, in seconds."""
    unhealthy_threshold: int = 2
    """Failed probes in a row that make an agent INACTIVE (embedded registry)."""
    stopped_retention_s: float = 60.0
    """How long a deregistered agent stays visible as STOPPED before it is removed, in
    seconds (0: removed at once)."""
    deregister_after_s: float = 300.0
    """How long an agent whose lease lapsed (or whose checks stay critical) is kept before
    it is removed, in seconds; Consul enforces at least 60."""
    store_url: str = "memory://"
    """State store of the workflow service and the economy's ledger: ``memory://``
    (in-process, lost on exit) or ``redis://[:password@]host:port/db`` (``rediss://`` for
    TLS), which replicas share and which survives restarts."""
    workflow_retention_s: float = 7 * 24 * 3600.0
    """How long a finished workflow, its events and request id are kept, in seconds."""
    workflow_lease_ttl_s: float = 10.0
    """Lease of a workflow replica on each run it owns, in seconds: another replica takes a
    run over this long after its owner died."""
    idempotency_ttl_s: float = 24 * 3600.0
    """How long the economy remembers a request id, in seconds: a retry within it replays
    the first result, one after it applies again."""
    economy_params: str = ""
    """JSON file of the economy's initial parameters (tiers, fees, unbonding period, streak
    bonus, reward distribution, pass threshold, escrow ttl); used only when the ledger is
    empty, after which governance changes them. Defaults when empty."""
    economy_maintenance_s: float = 1.0
    """How often the economy expires unrenewed escrows, completes unbonding, closes
    proposals past their window and makes scheduled reward distributions, in seconds."""
    lease_ttl_s: float = 10.0
    """Default agent lease length in seconds."""
    sweep_interval_s: float = 1.0
    """How often lapsed leases are looked for, in seconds."""
    grace_s: float = 5.0
    """How long in-flight calls may finish at shutdown, in seconds."""
    log_level: str = "INFO"
    """Python logging level name."""
    insecure_no_auth: bool = False
    """Turn authentication off: every caller is an anonymous admin (logged at start)."""
    auth_public_key: str = ""
    """PEM public key (EC for ES256, RSA for RS256) that verifies bearer tokens."""
    auth_private_key: str = ""
    """PEM private key that signs tokens; only the issuer has it (``meshwright up``'s dev key)."""
    auth_hs256_secret: str = ""
    """Shared HS256 secret instead of a key pair; single-process setups only (any holder can
    mint admin tokens)."""
    token: str = ""
    """Bearer token this process calls other services with (a ``service`` or ``agent`` token)."""
    tls_cert: str = ""
    """PEM certificate of this process, for mutual TLS (with ``tls_key`` and ``tls_ca``)."""
    tls_key: str = ""
    """PEM private key of ``tls_cert``."""
    tls_ca: str = ""
    """PEM CA certificate that signs every peer's certificate."""
    rate_limit_rps: float = 500.0
    """Calls per second per principal (token bucket; 0 turns it off). Services are exempt."""
    rate_limit_burst: int = 1000
    """Calls a principal may make at once after a quiet period."""
    cors_origins: str = ""
    """Comma-separated browser origins the gateway allows (CORS off when empty)."""
    config_dir: str = ""
    """Where ``meshwright up`` keeps its development keys and tokens; the user's config
    directory (``$XDG_CONFIG_HOME/meshwright`` or ``~/.config/meshwright``) when empty."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Unrecognised MESHWRIGHT_* variables, kept for error messages."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> MeshConfig:
        """Defaults, then ``MESHWRIGHT_*`` variables, then non-None ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = env_value(f.name, env)
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _coerce(name: str, typ: Any, raw: str) -> Any:
    kind = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a {kind}") from None
    return raw


SECRET_SETTINGS = frozenset({"token", "auth_hs256_secret"})
"""Settings that may also come from a file: ``MESHWRIGHT_<NAME>_FILE`` names a file holding
the value (Docker and Kubernetes secrets are mounted as files), used when
``MESHWRIGHT_<NAME>`` itself is unset."""


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``MESHWRIGHT_<NAME>``, or for a secret the stripped contents of the file
    ``MESHWRIGHT_<NAME>_FILE`` names; None when neither is set. A named file that cannot
    be read is a ValueError naming the variable and the file."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_PREFIX + name.upper())
    if (raw is None or raw == "") and name in SECRET_SETTINGS:
        variable = f"{ENV_PREFIX}{name.upper()}_FILE"
        path = env.get(variable)
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    return f.read().strip()
            except OSError as err:
                raise ValueError(f"{variable}={path!r}: {err.strerror or err}") from None
    return raw


def env_default(name: str, fallback: Any) -> Any:
    """The value of ``MESHWRIGHT_<NAME>`` or ``fallback`` (for argparse defaults)."""
    raw = env_value(name)
    return fallback if raw is None or raw == "" else raw


def env_flag(name: str) -> bool:
    """Whether ``MESHWRIGHT_<NAME>`` is set to a true value (1, true, yes, on)."""
    raw = os.environ.get(ENV_PREFIX + name.upper())
    return False if raw is None or raw == "" else bool(_coerce(name, "bool", raw))


def add_tls_flags(
    parser: argparse.ArgumentParser,
    *,
    default: Callable[[str], Any] = lambda name: env_default(name, ""),
) -> None:
    """``--tls-cert/--tls-key/--tls-ca``, the same on every command that serves or calls.

    ``default(setting)`` gives each flag's default (the env variable's value by default).
    """
    for flag, what in (
        ("cert", "this process's PEM certificate"),
        ("key", "the PEM private key of --tls-cert"),
        ("ca", "the PEM CA certificate that signs every peer"),
    ):
        parser.add_argument(
            f"--tls-{flag}",
            default=default(f"tls_{flag}"),
            metavar="FILE",
            help=f"mutual TLS: {what} (env MESHWRIGHT_TLS_{flag.upper()})",
        )


def backend_scheme(url: str, *, setting: str, supported: tuple[str, ...]) -> str:
    """The scheme of a backend URL, or ValueError naming the setting."""
    scheme = urlparse(url).scheme
    if scheme not in supported:
        raise ValueError(
            f"{setting}={url!r}: backend {scheme or '(none)'!r} is not available in this "
            f"build; supported: {', '.join(s + '://' for s in supported)}"
        )
    return scheme
