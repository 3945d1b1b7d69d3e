"""Mutual TLS: certificates made here with ``cryptography``, real servers on port 0.

A plaintext client, a client without a certificate and a client whose
certificate another CA signed are all refused; a client with a certificate of
the mesh's CA is served. A gateway in front of a remote economy reaches it
over TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.auth import Role
from meshwright.mesh.client import RemoteServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import Unavailable
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security
from meshwright.mesh.tls import TlsConfig
from meshwright.node import Node, start_node
from tests.support_auth import test_keys

ECONOMY = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def new(cls, cn: str) -> Ca:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, cn: str) -> tuple[bytes, bytes]:
        """A leaf certificate for 127.0.0.1/localhost (PEM cert, PEM key)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    ca: Ca
    server: TlsConfig
    client: TlsConfig
    rogue_client: TlsConfig


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca, rogue = Ca.new("meshwright test CA"), Ca.new("someone else's CA")
    server_cert, server_key = ca.issue("mesh")
    client_cert, client_key = ca.issue("client")
    rogue_cert, rogue_key = rogue.issue("intruder")
    return Pki(
        ca,
        TlsConfig(server_cert, server_key, ca.pem),
        TlsConfig(client_cert, client_key, ca.pem),
        # Trusts the right CA for the server, but presents a certificate of another.
        TlsConfig(rogue_cert, rogue_key, ca.pem),
    )


def _security(tls: TlsConfig) -> Security:
    keys = test_keys()
    return Security(Pipeline(verifier=keys.verifier()), keys.token(Role.SERVICE, "mesh"), tls)


@pytest_asyncio.fixture
async def economy_node(pki: Pki) -> AsyncIterator[Node]:
    node = await start_node(
        MeshConfig(grpc_port=0, http_port=0, grace_s=0),
        services=["economy"],
        gateway=False,
        security=_security(pki.server),
    )
    try:
        yield node
    finally:
        await node.stop()


ADMIN_MD = [("authorization", "Bearer " + test_keys().token(Role.ADMIN, "root"))]


async def _create(channel: grpc.aio.Channel, account_id: str) -> str:
    client = RemoteServiceClient(channel, ECONOMY)
    reply = await client.call(
        "CreateAccount",
        economy_pb2.CreateAccountRequest(account_id=account_id),
        metadata=ADMIN_MD,
        timeout=3,
    )
    return str(reply.account.account_id)


async def test_a_client_certificate_of_the_ca_is_served(pki: Pki, economy_node: Node) -> None:
    target = f"localhost:{economy_node.server.port}"
    async with grpc.aio.secure_channel(target, pki.client.channel_credentials()) as channel:
        assert await _create(channel, "tls-ok") == "tls-ok"


async def test_plaintext_is_refused(economy_node: Node) -> None:
    async with grpc.aio.insecure_channel(economy_node.grpc_address) as channel:
        with pytest.raises(Unavailable):
            await _create(channel, "tls-plain")


async def test_no_client_certificate_is_refused(pki: Pki, economy_node: Node) -> None:
    target = f"localhost:{economy_node.server.port}"
    server_only = grpc.ssl_channel_credentials(root_certificates=pki.ca.pem)
    async with grpc.aio.secure_channel(target, server_only) as channel:
        with pytest.raises(Unavailable):
            await _create(channel, "tls-anonymous")


async def test_a_certificate_of_another_ca_is_refused(pki: Pki, economy_node: Node) -> None:
    target = f"localhost:{economy_node.server.port}"
    async with grpc.aio.secure_channel(target, pki.rogue_client.channel_credentials()) as channel:
        with pytest.raises(Unavailable):
            await _create(channel, "tls-rogue")


async def test_the_gateway_reaches_a_remote_economy_over_tls(pki: Pki, economy_node: Node) -> None:
    front = await start_node(
        MeshConfig(grpc_port=0, http_port=0, grace_s=0),
        services=["registry"],
        economy_target=f"localhost:{economy_node.server.port}",
        security=_security(pki.client),
    )
    try:
        async with httpx.AsyncClient(base_url=front.http_url or "") as http:
            reply = await http.post(
                "/v1/accounts",
                json={"accountId": "via-gateway"},
                headers={"authorization": ADMIN_MD[0][1]},
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["account"]["accountId"] == "via-gateway"
        assert economy_node.economy is not None
        assert (await economy_node.economy.get_account("via-gateway")).owner == "admin:root"
    finally:
        await front.stop()


def test_tls_config_needs_all_three_files(tmp_path: Path) -> None:
    assert TlsConfig.maybe("", "", "") is None
    with pytest.raises(ValueError, match="--tls-key"):
        TlsConfig.maybe(str(tmp_path / "cert.pem"), "", str(tmp_path / "ca.pem"))
