"""`meshwright serve`'s auth, TLS, rate-limit and CORS flags reach the servers, and the
client commands' --tls-* flags reach their channels."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e._proc import Running, cli_env, grpcurl, meshwright
from tests.mesh.test_tls import Ca
from tests.support_auth import test_keys

pytestmark = pytest.mark.asyncio(loop_scope="module")

PORTS = ("--grpc-port", "0", "--http-port", "0")
LIST_WORKFLOWS = "meshwright.workflow.v1.WorkflowService/ListWorkflows"
SERVING = r"serving registry, economy, workflow on (127\.0\.0\.1:\d+)"


@contextlib.asynccontextmanager
async def _serve(*args: str, env: dict[str, str]) -> AsyncIterator[tuple[Running, str]]:
    proc = await Running.start("serve", *args, env=env)
    try:
        address = (await proc.wait_for(SERVING)).group(1)
        yield proc, address
    finally:
        assert await proc.stop() == 0, proc.output


async def test_serve_with_auth_on_needs_a_key(tmp_path: Path) -> None:
    rc, out = await meshwright("serve", *PORTS, env=cli_env(tmp_path))
    assert rc == 2, out
    assert out.strip().count("\n") == 0 and "--auth-public-key" in out, out
    assert "Traceback" not in out


async def test_serve_auth_rate_limit_and_cors_flags(tmp_path: Path) -> None:
    keys = test_keys()
    env = cli_env(tmp_path, MESHWRIGHT_RATE_LIMIT_BURST="2")
    args = (
        *PORTS,
        "--auth-public-key",
        str(keys.public_key_file),
        "--auth-private-key",
        str(keys.private_key_file),
        "--rate-limit-rps",
        "0.01",
        "--cors-origins",
        "https://app.example",
    )
    async with _serve(*args, env=env) as (proc, address):
        http_url = (await proc.wait_for(r"gateway on (http://\S+)")).group(1)
        # Auth: anonymous refused; a token signed by the key given is served.
        rc, _, err = await grpcurl("-plaintext", address, LIST_WORKFLOWS)
        assert rc != 0 and "Unauthenticated" in err, err
        user = f"authorization: Bearer {keys.token('client', 'user')}"
        rc, out, err = await grpcurl("-plaintext", "-H", user, address, LIST_WORKFLOWS)
        assert rc == 0 and isinstance(json.loads(out), dict), err

        async with httpx.AsyncClient(base_url=http_url, timeout=10) as http:
            # Rate limit: a burst of 2 at 0.01/s, per principal; the third call waits.
            limited = {"authorization": f"Bearer {keys.token('client', 'limited')}"}
            codes = [(await http.get("/v1/workflows", headers=limited)).status_code for _ in "abc"]
            assert codes == [200, 200, 429], codes
            # Another principal has its own bucket.
            other = {"authorization": f"Bearer {keys.token('client', 'other')}"}
            assert (await http.get("/v1/workflows", headers=other)).status_code == 200

            # CORS: the allowed origin gets its preflight answered; another does not.
            preflight = {
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            }
            ok = await http.options("/v1/workflows", headers=preflight)
            assert ok.headers.get("access-control-allow-origin") == "https://app.example"
            evil = await http.options(
                "/v1/workflows", headers={**preflight, "Origin": "https://evil.example"}
            )
            assert "access-control-allow-origin" not in evil.headers


async def test_serve_and_client_commands_speak_mutual_tls(tmp_path: Path) -> None:
    ca = Ca.new("meshwright e2e CA")
    files: dict[str, Path] = {}
    for name, (cert, key) in (("server", ca.issue("mesh")), ("client", ca.issue("cli"))):
        files[f"{name}.crt"], files[f"{name}.key"] = tmp_path / f"{name}.crt", tmp_path / name
        files[f"{name}.crt"].write_bytes(cert)
        files[f"{name}.key"].write_bytes(key)
    files["ca"] = tmp_path / "ca.crt"
    files["ca"].write_bytes(ca.pem)
    env = cli_env(tmp_path / "config")
    args = (
        *PORTS,
        "--no-gateway",
        "--insecure-no-auth",
        "--tls-cert",
        str(files["server.crt"]),
        "--tls-key",
        str(files["server.key"]),
        "--tls-ca",
        str(files["ca"]),
    )
    async with _serve(*args, env=env) as (proc, address):
        assert "AUTHENTICATION IS OFF" in proc.output  # --insecure-no-auth logs it at start
        tls = (
            "--tls-cert",
            str(files["client.crt"]),
            "--tls-key",
            str(files["client.key"]),
            "--tls-ca",
            str(files["ca"]),
        )
        rc, out = await meshwright("workflow", "list", "--target", address, *tls, env=env)
        assert rc == 0, out
        # The same from MESHWRIGHT_TLS_* variables.
        tls_env = {
            **env,
            "MESHWRIGHT_TLS_CERT": str(files["client.crt"]),
            "MESHWRIGHT_TLS_KEY": str(files["client.key"]),
            "MESHWRIGHT_TLS_CA": str(files["ca"]),
        }
        rc, out = await meshwright("agents", "--target", address, env=tls_env)
        assert rc == 0, out
        # Plaintext is refused, as one line.
        rc, out = await meshwright("workflow", "list", "--target", address, env=env)
        assert rc == 1 and out.startswith("error UNAVAILABLE"), out
        assert "Traceback" not in out
