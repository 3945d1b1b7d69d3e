"""Who is calling: principals, bearer tokens (JWT) and the keys that sign them.

Tokens are JWTs signed with an asymmetric key (ES256 by default): only the
issuer (``meshwright token create``, or ``meshwright up`` for its own
development keys) holds the private key; every verifier — each service replica
and each agent process — holds only the public key, so no verifier can mint a
token. HS256 with a shared secret is accepted only when asked for explicitly
(single-process setups), because every holder of the secret can mint admin
tokens.

Verified tokens are cached (bounded, never past their expiry) so a call pays
one dictionary lookup, not a signature check.
"""

from __future__ import annotations

import enum
import math
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshwright.mesh.errors import Unauthenticated

AUDIENCE = "meshwright"
"""The ``aud`` every meshwright token carries and every verifier requires."""
ISSUER = "meshwright"
"""The ``iss`` of tokens this module issues."""
ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
DEFAULT_LEEWAY_S = 30.0
"""Clock skew tolerated on ``exp``/``nbf``/``iat``."""
MAX_TOKEN_BYTES = 4096
SUBJECT_PATTERN = re.compile(r"[^\s:][^\s]{0,127}")
"""A token subject: 1-128 characters, no whitespace, not starting with ':' (owners are
recorded as ``role:subject``, so every valid subject makes a valid owner name)."""


class TokenMissing(Unauthenticated):
    """The call carries no bearer token."""

    reason = "TOKEN_MISSING"


class TokenMalformed(Unauthenticated):
    """The authorization header is not ``Bearer <token>``."""

    reason = "TOKEN_MALFORMED"


class TokenInvalid(Unauthenticated):
    """The token's signature, algorithm, audience or claims are wrong."""

    reason = "TOKEN_INVALID"


class TokenExpired(Unauthenticated):
    """The token's ``exp`` has passed (beyond the allowed clock skew)."""

    reason = "TOKEN_EXPIRED"


class Role(enum.StrEnum):
    """What a principal is; the ``role`` claim."""

    ADMIN = "admin"
    SERVICE = "service"
    AGENT = "agent"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one RPC."""

    role: Role
    subject: str
    """The token's ``sub``: an agent id for agents, a user or service name otherwise."""

    @property
    def name(self) -> str:
        """``role:subject``: what resources record as their owner."""
        return f"{self.role.value}:{self.subject}"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_trusted(self) -> bool:
        """Admins and mesh services pass ownership checks."""
        return self.role in (Role.ADMIN, Role.SERVICE)


ANONYMOUS_ADMIN = Principal(Role.ADMIN, "anonymous")
"""Every caller when auth is turned off (``--insecure-no-auth``)."""


class TokenVerifier:
    """Checks bearer tokens: signature, algorithm, ``aud``, ``exp``, ``sub``, ``role``."""

    def __init__(
        self,
        key: Any,
        *,
        algorithms: tuple[str, ...] = ("ES256",),
        audience: str = AUDIENCE,
        leeway_s: float = DEFAULT_LEEWAY_S,
        cache_size: int = 10_000,
        cache_ttl_s: float = 60.0,
        clock: Any = time.time,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one algorithm is required")
        if "none" in (a.lower() for a in algorithms):
            raise ValueError("the 'none' algorithm is never accepted")
        self._key = key
        self._algorithms = list(algorithms)
        self._audience = audience
        self._leeway_s = leeway_s
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock

    def is_cached(self, token: str) -> bool:
        """Whether ``verify`` would answer from its cache (no signature check)."""
        hit = self._cache.get(token)
        return hit is not None and self._clock() < hit[1]

    def verify(self, token: str) -> Principal:
        """The principal a token names, or ``Unauthenticated`` (never says which check failed
        beyond a short reason, and never echoes the token)."""
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None:
            principal, valid_until = hit
            if now < valid_until:
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
        principal, exp = self._decode(token, now)
        # Never cached past the token's own expiry (plus the allowed skew).
        valid_until = min(now + self._cache_ttl_s, exp + self._leeway_s)
        self._cache[token] = (principal, valid_until)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str, now: float) -> tuple[Principal, float]:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid("bearer token too long")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                options={
                    "require": ["exp", "sub", "aud"],
                    # Checked below against this verifier's clock, the one its cache
                    # uses: PyJWT would read the wall clock, and a cache entry and a
                    # fresh check could then disagree about when a token expires.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as err:
            raise TokenInvalid(f"bearer token rejected: {type(err).__name__}") from None
        exp = _numeric_date(claims, "exp")
        if exp <= now - self._leeway_s:
            raise TokenExpired("bearer token expired")
        for name in ("nbf", "iat"):
            if name in claims and _numeric_date(claims, name) > now + self._leeway_s:
                raise TokenInvalid(f"bearer token not valid yet ({name})")
        return _principal_of(claims), exp


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenInvalid(f"bearer token's {name} is not a number")
    return float(value)


def _principal_of(claims: Mapping[str, Any]) -> Principal:
    role, sub = claims.get("role"), claims.get("sub")
    if not isinstance(sub, str) or not SUBJECT_PATTERN.fullmatch(sub):
        raise TokenInvalid("bearer token has no valid subject")
    try:
        return Principal(Role(str(role)), sub)
    except ValueError:
        raise TokenInvalid(
            "bearer token has no valid role (admin, service, agent or client)"
        ) from None


class TokenIssuer:
    """Mints tokens; only the process holding the private key has one."""

    def __init__(self, key: Any, *, algorithm: str = "ES256", clock: Any = time.time) -> None:
        self._key = key
        self._algorithm = algorithm
        self._clock = clock

    def issue(self, role: Role | str, subject: str, *, ttl_s: float = 3600.0) -> str:
        """A signed token for ``role``/``subject`` valid for ``ttl_s`` seconds."""
        role = Role(role)
        if not SUBJECT_PATTERN.fullmatch(subject):
            raise ValueError(
                "subject must be 1-128 characters, no whitespace, not starting with ':'"
            )
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        now = int(self._clock())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "role": role.value,
            "iat": now,
            "exp": now + int(ttl_s),
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm)


# -- keys -------------------------------------------------------------------


def generate_key_pair() -> tuple[bytes, bytes]:
    """A new P-256 key pair as (private PEM, public PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def write_secret(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` readable by the owner only (mode 0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def algorithm_of_public_key(pem: bytes) -> str:
    """ES256 for an EC key, RS256 for an RSA key; ValueError otherwise."""
    key = serialization.load_pem_public_key(pem)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    from cryptography.hazmat.primitives.asymmetric import rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    raise ValueError("the public key must be an EC (ES256) or RSA (RS256) key")


def algorithm_of_private_key(pem: bytes) -> str:
    """ES256 for an EC key, RS256 for an RSA key; ValueError otherwise."""
    key = serialization.load_pem_private_key(pem, password=None)
    return algorithm_of_public_key(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def verifier_from_files(
    *, public_key: str = "", hs256_secret: str = "", leeway_s: float = DEFAULT_LEEWAY_S
) -> TokenVerifier:
    """A verifier for a PEM public key file, or (explicitly) an HS256 secret."""
    if public_key and hs256_secret:
        raise ValueError("give a public key or an HS256 secret, not both")
    if public_key:
        pem = Path(public_key).read_bytes()
        return TokenVerifier(pem, algorithms=(algorithm_of_public_key(pem),), leeway_s=leeway_s)
    if hs256_secret:
        if len(hs256_secret.encode()) < 32:
            raise ValueError("an HS256 secret must be at least 32 bytes")
        return TokenVerifier(hs256_secret.encode(), algorithms=("HS256",), leeway_s=leeway_s)
    raise ValueError(
        "auth is on but no key to verify tokens with: pass --auth-public-key "
        "(or MESHWRIGHT_AUTH_PUBLIC_KEY), or --insecure-no-auth to turn auth off"
    )


def issuer_from_file(private_key: str) -> TokenIssuer:
    """An issuer for a PEM private key file."""
    pem = Path(private_key).read_bytes()
    return TokenIssuer(
        serialization.load_pem_private_key(pem, password=None),
        algorithm=algorithm_of_private_key(pem),
    )


def bearer_token(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer <token>`` entry, None when absent.

    ``Unauthenticated`` when the header is there but not a bearer token.
    """
    for key, value in metadata or ():
        if key == "authorization":
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenMalformed("the authorization header must be 'Bearer <token>'")
            return token.strip()
    return None


__all__ = [
    "ANONYMOUS_ADMIN",
    "AUDIENCE",
    "Principal",
    "Role",
    "TokenExpired",
    "TokenInvalid",
    "TokenIssuer",
    "TokenMalformed",
    "TokenMissing",
    "TokenVerifier",
    "algorithm_of_public_key",
    "bearer_token",
    "generate_key_pair",
    "issuer_from_file",
    "verifier_from_files",
    "write_secret",
]
