"""Test keys and tokens: a real ES256 key pair per session, and tokens minted with it."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from meshwright.mesh.auth import Role, TokenIssuer, TokenVerifier, generate_key_pair, write_secret

NO_AUTH_ENV = {"MESHWRIGHT_INSECURE_NO_AUTH": "1"}
"""Environment of agent processes started by tests that are not about auth."""


@dataclass(frozen=True)
class TestKeys:
    """A signing key pair on disk and in memory."""

    __test__ = False  # not a test class, despite the name

    private_pem: bytes
    public_pem: bytes
    public_key_file: Path
    private_key_file: Path

    def issuer(self) -> TokenIssuer:
        return TokenIssuer(serialization.load_pem_private_key(self.private_pem, password=None))

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.public_pem, algorithms=("ES256",))

    def token(self, role: Role | str, subject: str, *, ttl_s: float = 3600.0) -> str:
        return self.issuer().issue(role, subject, ttl_s=ttl_s)


@functools.cache
def test_keys() -> TestKeys:
    """One key pair for the whole test session (files in a private temp dir)."""
    private, public = generate_key_pair()
    folder = Path(tempfile.mkdtemp(prefix="meshwright-test-keys-"))
    write_secret(folder / "key.pem", private)
    write_secret(folder / "key.pub.pem", public)
    return TestKeys(private, public, folder / "key.pub.pem", folder / "key.pem")


test_keys.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
