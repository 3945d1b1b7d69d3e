"""Security at the composition root: the pipeline, this process's identity, TLS, dev keys.

``Security.from_config`` turns the settings (flags and ``MESHWRIGHT_*``) into
the pipeline every server and in-process client uses, the token this process
calls others with, and the TLS material. ``DevCredentials`` is what
``meshwright up`` makes on first run so the first run stays one command: a
P-256 key pair and long-lived admin and client tokens in the user's config
directory, each file mode 0600.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from meshwright.mesh.auth import (
    Role,
    TokenIssuer,
    TokenVerifier,
    generate_key_pair,
    issuer_from_file,
    verifier_from_files,
    write_secret,
)
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.limits import RateLimit, RateLimiter
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.tls import TlsConfig

log = logging.getLogger(__name__)

DEV_TOKEN_TTL_S = 90 * 86_400.0
"""Development tokens last 90 days and are re-minted when they are about to expire."""


def config_dir(config: MeshConfig | None = None) -> Path:
    """Where development keys and tokens live."""
    if config is not None and config.config_dir:
        return Path(config.config_dir)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "meshwright"


@dataclass(frozen=True, slots=True)
class DevCredentials:
    """The development key pair and tokens of ``meshwright up``."""

    directory: Path
    private_key: Path
    public_key: Path
    admin_token_file: Path
    client_token_file: Path

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    @property
    def client_token(self) -> str:
        return self.client_token_file.read_text().strip()

    def issuer(self) -> TokenIssuer:
        return issuer_from_file(str(self.private_key))

    @classmethod
    def ensure(cls, directory: Path, *, client_subject: str = "dev") -> DevCredentials:
        """Load, or create on first use, the key pair and the admin and client tokens."""
        creds = cls(
            directory=directory,
            private_key=directory / "signing-key.pem",
            public_key=directory / "signing-key.pub.pem",
            admin_token_file=directory / "admin.token",
            client_token_file=directory / "client.token",
        )
        if not creds.private_key.exists() or not creds.public_key.exists():
            private, public = generate_key_pair()
            write_secret(creds.private_key, private)
            write_secret(creds.public_key, public)
            for f in (creds.admin_token_file, creds.client_token_file):
                f.unlink(missing_ok=True)  # signed by the old key
            log.info("created a development signing key in %s", directory)
        issuer = creds.issuer()
        creds.ensure_token(creds.admin_token_file, Role.ADMIN, "admin", issuer=issuer)
        creds.ensure_token(creds.client_token_file, Role.CLIENT, client_subject, issuer=issuer)
        return creds

    def ensure_token(
        self,
        path: Path,
        role: Role,
        subject: str,
        *,
        issuer: TokenIssuer | None = None,
        ttl_s: float = DEV_TOKEN_TTL_S,
    ) -> bool:
        """Write a ``role`` token for ``subject`` to ``path`` (mode 0600) unless the one
        there verifies with this key, names that role and subject, and is valid for at
        least another day; True when it wrote one."""
        if _fresh(path, self.public_key, role=role, subject=subject):
            return False
        issuer = issuer or self.issuer()
        write_secret(path, issuer.issue(role, subject, ttl_s=ttl_s) + "\n")
        return True


def _fresh(path: Path, public_key: Path, *, role: Role, subject: str) -> bool:
    """A token file that verifies with the key, is ``role``'s for ``subject`` and is valid
    for at least another day."""
    try:
        token = path.read_text().strip()
        verifier = verifier_from_files(public_key=str(public_key))
        verifier.verify(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:
        return False
    return (
        claims.get("sub") == subject
        and claims.get("role") == role.value
        and float(claims.get("exp", 0)) - time.time() > 86_400
    )


@dataclass(frozen=True, slots=True)
class Security:
    """What a process needs to serve and to call securely."""

    pipeline: Pipeline
    token: str | None
    """The bearer token this process calls others with; None with auth off."""
    tls: TlsConfig | None
    issuer: TokenIssuer | None = None
    """Only in the process holding the signing key (``meshwright up``)."""

    @classmethod
    def from_config(
        cls,
        config: MeshConfig,
        *,
        issuer: TokenIssuer | None = None,
        verifier: TokenVerifier | None = None,
        service_subject: str = "mesh",
    ) -> Security:
        """The pipeline and identity ``config`` asks for.

        With auth on, tokens are verified with ``config.auth_public_key`` (or an
        explicit HS256 secret, or the given ``verifier``); the process calls
        others with ``config.token``, or mints itself a service token when it
        holds the signing key.
        """
        tls = TlsConfig.maybe(config.tls_cert, config.tls_key, config.tls_ca)
        limiter = (
            RateLimiter(RateLimit(rate_per_s=config.rate_limit_rps, burst=config.rate_limit_burst))
            if config.rate_limit_rps > 0
            else None
        )
        if config.insecure_no_auth:
            log.warning(
                "AUTHENTICATION IS OFF (--insecure-no-auth): every caller is an admin; "
                "anyone who can reach these ports can mint money and run any task"
            )
            return cls(Pipeline(verifier=None, limiter=limiter), None, tls, issuer)
        if issuer is None and config.auth_private_key:
            issuer = issuer_from_file(config.auth_private_key)
        if issuer is None and config.auth_hs256_secret and not config.auth_public_key:
            # The explicit single-process option: whoever holds the secret can sign, so
            # this process mints its own service token with it.
            issuer = TokenIssuer(config.auth_hs256_secret.encode(), algorithm="HS256")
        if verifier is None:
            verifier = verifier_from_files(
                public_key=config.auth_public_key, hs256_secret=config.auth_hs256_secret
            )
        token = config.token or None
        if token is None and issuer is not None:
            token = issuer.issue(Role.SERVICE, service_subject, ttl_s=DEV_TOKEN_TTL_S)
        # Fresh tokens per host are rare (each is verified once, then cached); the
        # budget only stops floods of forged ones, so it is ten times the call rate.
        verify_limiter = (
            RateLimiter(
                RateLimit(rate_per_s=10 * config.rate_limit_rps, burst=10 * config.rate_limit_burst)
            )
            if config.rate_limit_rps > 0
            else None
        )
        pipeline = Pipeline(verifier=verifier, limiter=limiter, verify_limiter=verify_limiter)
        return cls(pipeline, token, tls, issuer)


def insecure_pipeline() -> Pipeline:
    """A pipeline with authentication off (tests, and ``--insecure-no-auth``)."""
    return Pipeline(verifier=None)


__all__ = ["DevCredentials", "Security", "config_dir", "insecure_pipeline"]
