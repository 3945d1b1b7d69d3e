"""Mutual TLS for servers and channels (an option; plaintext on loopback by default)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files: this process's certificate and key, and the CA that signs its peers."""

    cert: bytes
    key: bytes
    ca: bytes

    @classmethod
    def from_files(cls, cert: str, key: str, ca: str) -> TlsConfig:
        """Read the three files; ValueError naming what is missing."""
        missing = [
            n for n, v in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)) if not v
        ]
        if missing:
            raise ValueError(f"mTLS needs {', '.join(missing)} as well")
        return cls(Path(cert).read_bytes(), Path(key).read_bytes(), Path(ca).read_bytes())

    @classmethod
    def maybe(cls, cert: str, key: str, ca: str) -> TlsConfig | None:
        """None when none of the three is given, else ``from_files``."""
        if not (cert or key or ca):
            return None
        return cls.from_files(cert, key, ca)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server side: present our certificate, require and verify a client certificate."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client side: verify the server against the CA, present our certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


__all__ = ["TlsConfig"]
