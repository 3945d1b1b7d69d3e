"""`meshwright up` with auth on, as a new user meets it: dev keys and tokens, the demo as
the client, anonymous callers refused, the CLI finding its tokens, `token create`."""

from __future__ import annotations

import argparse
import json
import re
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from meshwright.cli import parse_duration
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.auth import Role, verifier_from_files
from meshwright.mesh.client import ChannelPool
from tests.e2e._proc import Running, cli_env, grpcurl, meshwright

pytestmark = pytest.mark.asyncio(loop_scope="module")

PORTS = ("--grpc-port", "0", "--http-port", "0")
SECRET_FILES = ("signing-key.pem", "signing-key.pub.pem", "admin.token", "client.token")
LIST_WORKFLOWS = "meshwright.workflow.v1.WorkflowService/ListWorkflows"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_up_demo_with_auth_writes_private_keys_and_runs_as_the_client(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    rc, out = await meshwright("up", "--demo", "--exit-after-demo", *PORTS, env=cli_env(config))
    assert rc == 0, out
    assert "auth  ON" in out, out
    # The payer account is the client's, funded by the admin; the client runs the workflow.
    assert "admin minted 1000 into account demo, owned by client:dev" in out, out
    assert "as client:dev" in out, out
    assert re.search(r"agent sysinfo-\w+ at 127\.0\.0\.1:\d+: system\.snapshot \(3\)", out), out
    for task in ("snapshot", "load", "memory", "report"):
        assert re.search(rf"TASK_SUCCEEDED\s+{task} on \S+ paid", out), out
    assert "WORKFLOW_SUCCEEDED spent 12, refunded 88" in out, out
    assert "demo account balance 988" in out, out
    assert re.search(r"ledger OK: \d+ transactions, \d+ accounts", out), out  # balances replay
    # How to call it, with the token files' real paths.
    token_file = config / "client.token"
    assert f'-H "authorization: Bearer $(cat {token_file})"' in out, out
    assert re.search(r"curl -H .*/v1/workflows", out), out

    assert _mode(config) == 0o700
    for name in SECRET_FILES:
        assert _mode(config / name) == 0o600, name
    verifier = verifier_from_files(public_key=str(config / "signing-key.pub.pem"))
    admin = verifier.verify((config / "admin.token").read_text().strip())
    client = verifier.verify(token_file.read_text().strip())
    assert (admin.role, client.role, client.subject) == (Role.ADMIN, Role.CLIENT, "dev")

    # A second run reuses the key pair and tokens (the CLI's tokens stay valid).
    before = {n: (config / n).read_bytes() for n in SECRET_FILES}
    rc, out = await meshwright("up", "--demo", "--exit-after-demo", *PORTS, env=cli_env(config))
    assert rc == 0, out
    assert {n: (config / n).read_bytes() for n in SECRET_FILES} == before


async def test_up_insecure_no_auth_warns_and_writes_no_keys(tmp_path: Path) -> None:
    config = tmp_path / "config"
    rc, out = await meshwright(
        "up", "--insecure-no-auth", "--demo", "--exit-after-demo", *PORTS, env=cli_env(config)
    )
    assert rc == 0, out
    assert "AUTHENTICATION IS OFF" in out, out  # the logged warning
    assert "auth OFF" in out, out
    assert "WORKFLOW_SUCCEEDED" in out, out  # the agents were told: no auth either
    assert not config.exists()


# -- against a running `meshwright up` ----------------------------------------------


@dataclass
class Up:
    proc: Running
    config: Path
    grpc: str
    http: str

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(self.config, MESHWRIGHT_TARGET=self.grpc, **extra)

    def token(self, role: str) -> str:
        return (self.config / f"{role}.token").read_text().strip()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    config = tmp_path_factory.mktemp("up") / "config"
    proc = await Running.start("up", *PORTS, env=cli_env(config))
    try:
        await proc.wait_for(r"ready; Ctrl-C stops the mesh")
        grpc_addr = (await proc.wait_for(r"gRPC\s+(127\.0\.0\.1:\d+)")).group(1)
        http = (await proc.wait_for(r"REST\s+(http://127\.0\.0\.1:\d+)")).group(1)
        yield Up(proc, config, grpc_addr, http)
    finally:
        rc = await proc.stop()
        assert rc == 0, proc.output


async def test_anonymous_grpc_is_refused_and_the_client_token_works(up: Up) -> None:
    rc, _, err = await grpcurl("-plaintext", up.grpc, LIST_WORKFLOWS)
    assert rc != 0 and "Unauthenticated" in err and "TOKEN_MISSING" in err, err
    rc, out, err = await grpcurl(
        "-plaintext", "-H", f"authorization: Bearer {up.token('client')}", up.grpc, LIST_WORKFLOWS
    )
    assert rc == 0, err
    assert isinstance(json.loads(out), dict)
    rc, out, err = await grpcurl("-plaintext", up.grpc, "list")  # reflection stays open
    assert rc == 0 and "meshwright.workflow.v1.WorkflowService" in out, err


async def test_anonymous_rest_is_refused_and_the_client_token_works(up: Up) -> None:
    async with httpx.AsyncClient(base_url=up.http, timeout=10) as http:
        anonymous = await http.get("/v1/workflows")
        assert anonymous.status_code == 401, anonymous.text
        ok = await http.get(
            "/v1/workflows", headers={"authorization": f"Bearer {up.token('client')}"}
        )
        assert ok.status_code == 200, ok.text


async def test_sample_agents_serve_only_the_mesh_and_admins(up: Up) -> None:
    rc, out = await meshwright("agents", env=up.env())
    assert rc == 0, out
    endpoints = re.findall(r"^(analyst|sysinfo)-[0-9a-f]{8}\s+ACTIVE\s+(\S+)", out, re.M)
    assert {name for name, _ in endpoints} == {"analyst", "sysinfo"}, out
    analyst = next(ep for name, ep in endpoints if name == "analyst")
    body = '{"task_id": "e2e-1", "skill": "text.upper", "input": {"text": "hi"}}'
    execute = "meshwright.agent.v1.AgentService/ExecuteTask"
    rc, _, err = await grpcurl("-plaintext", "-d", body, analyst, execute)
    assert rc != 0 and "Unauthenticated" in err, err
    client = f"authorization: Bearer {up.token('client')}"
    rc, _, err = await grpcurl("-plaintext", "-H", client, "-d", body, analyst, execute)
    assert rc != 0 and "PermissionDenied" in err, err
    admin = f"authorization: Bearer {up.token('admin')}"
    rc, out, err = await grpcurl("-plaintext", "-H", admin, "-d", body, analyst, execute)
    assert rc == 0, err
    assert json.loads(out)["task"]["output"] == {"text": "HI"}


async def test_cli_mints_as_admin_and_runs_workflows_as_the_client(up: Up) -> None:
    rc, out = await meshwright("account", "create", "carol", "--balance", "300", env=up.env())
    assert rc == 0, out
    account = json.loads(out)
    assert (account["balance"], account["owner"]) == ("300", "client:dev")
    rc, out = await meshwright(
        "workflow", "run", "demo", "--payer", "carol", "--follow", env=up.env()
    )
    assert rc == 0 and "WORKFLOW_SUCCEEDED" in out, out
    rc, out = await meshwright("account", "get", "carol", env=up.env())
    assert rc == 0 and json.loads(out)["balance"] == "288", out


async def test_cli_account_mint_transfer_list_and_history(up: Up) -> None:
    # --gov mints GOV (for staking) as the admin too; the account is the dev client's.
    rc, out = await meshwright(
        "account", "create", "erin", "--balance", "300", "--gov", "50", env=up.env()
    )
    assert rc == 0, out
    assert (json.loads(out)["govBalance"], json.loads(out)["owner"]) == ("50", "client:dev")
    rc, out = await meshwright("account", "mint", "erin", "25", "--asset", "gov", env=up.env())
    assert rc == 0, out
    minted = json.loads(out)
    assert minted["account"]["govBalance"] == "75"
    assert minted["transaction"]["fromAccountId"] == "system:issuance"
    rc, out = await meshwright("account", "mint", "erin", "1", "--as", "client", env=up.env())
    assert rc == 1 and "PERMISSION_DENIED (ROLE_NOT_ALLOWED)" in out, out

    rc, out = await meshwright("account", "create", "frank", env=up.env())
    assert rc == 0, out
    rc, out = await meshwright("account", "transfer", "erin", "frank", "40", env=up.env())
    assert rc == 0, out
    moved = json.loads(out)
    assert (moved["fromAccount"]["balance"], moved["toAccount"]["balance"]) == ("260", "40")
    rc, out = await meshwright(
        "account", "transfer", "frank", "erin", "5", "--asset", "gov", env=up.env()
    )
    assert rc == 1 and "INSUFFICIENT_FUNDS" in out, out

    rc, out = await meshwright("account", "show", "erin", env=up.env())
    assert rc == 0 and json.loads(out)["balance"] == "260", out
    # The client lists its own accounts; the admin the ledger's too.
    rc, out = await meshwright("account", "list", env=up.env())
    assert rc == 0, out
    assert re.search(r"^erin\s+USER\s+CREDIT 260  GOV 75 .* client:dev$", out, re.M), out
    assert re.search(r"^frank\s+USER\s+CREDIT 40 ", out, re.M) and "system:" not in out, out
    rc, out = await meshwright(
        "account", "list", "--as", "admin", "--kind", "issuance", env=up.env()
    )
    assert rc == 0 and re.search(r"^system:issuance\s+ISSUANCE", out, re.M), out

    rc, out = await meshwright("account", "history", "erin", env=up.env())
    assert rc == 0, out
    lines = out.strip().splitlines()
    assert [line.split()[2] for line in lines] == ["TRANSFER", "MINT", "MINT"], out
    assert "-40 CREDIT" in lines[0] and "erin -> frank" in lines[0], out
    assert "+300 CREDIT +50 GOV" in lines[2], out  # one mint, two assets
    rc, out = await meshwright(
        "account", "history", "erin", "--asset", "gov", "--kind", "mint", "--limit", "1",
        env=up.env(),
    )  # fmt: skip
    assert rc == 0, out
    assert "+25 GOV" in out and "next page: --page-token" in out, out
    rc, out = await meshwright("account", "history", "erin", "--kind", "bogus", env=up.env())
    assert rc == 2 and "is not one of" in out, out


async def test_cli_escrows_proposals_and_the_ledger(up: Up) -> None:
    rc, out = await meshwright(
        "account", "create", "gina", "--balance", "100", "--gov", "80", env=up.env()
    )
    assert rc == 0, out
    rc, out = await meshwright(
        "workflow", "run", "demo", "--payer", "gina", "--follow", env=up.env()
    )
    assert rc == 0 and "WORKFLOW_SUCCEEDED" in out, out
    rc, out = await meshwright("escrow", "list", "--state", "closed", env=up.env())
    assert rc == 0, out
    (line,) = [ln for ln in out.splitlines() if "  gina  " in ln]
    assert re.search(r"CLOSED\s+gina  amount 100  captured 12  released 88", line), out
    escrow_id = line.split()[0]
    rc, out = await meshwright("escrow", "show", escrow_id, env=up.env())
    assert rc == 0, out
    escrow = json.loads(out)
    assert (escrow["state"], escrow["owner"], escrow["captures"]) == (
        "ESCROW_STATE_CLOSED",
        "client:dev",
        4,
    )

    # A proposal (staking and proposing over gRPC, as the client).
    pool = ChannelPool(token=up.token("client"))
    try:
        eco = pool.client(up.grpc, economy_pb2.DESCRIPTOR.services_by_name["EconomyService"])
        await eco.call("Stake", economy_pb2.StakeRequest(account_id="gina", amount=80))
        created = await eco.call(
            "CreateProposal",
            economy_pb2.CreateProposalRequest(
                proposer_account_id="gina",
                title="a small fee",
                change=economy_pb2.ParameterChange(transfer_fee_bps=10),
            ),
        )
    finally:
        await pool.close()
    proposal_id = created.proposal.proposal_id
    rc, out = await meshwright("proposal", "list", "--state", "open", env=up.env())
    assert rc == 0, out
    assert re.search(
        rf"^{proposal_id}\s+OPEN .* a small fee  \[change: transfer_fee_bps\]$", out, re.M
    )
    rc, out = await meshwright("proposal", "show", proposal_id, env=up.env())
    assert rc == 0 and json.loads(out)["change"] == {"transferFeeBps": 10}, out

    rc, out = await meshwright("ledger", "params", env=up.env())
    assert rc == 0, out
    params = json.loads(out)
    assert (params["version"], params["passThresholdBps"]) == ("1", 5000), out
    # The audit is the admin's (the CLI picks admin.token for it), and it balances.
    rc, out = await meshwright("ledger", "audit", env=up.env())
    assert rc == 0, out
    assert re.search(r"^ledger OK: \d+ transactions, \d+ accounts$", out, re.M), out
    assert re.search(r"^  CREDIT issued (\d+)  held \1$", out, re.M), out
    rc, out = await meshwright("ledger", "audit", "--json", env=up.env())
    assert rc == 0 and json.loads(out)["ok"] is True, out
    rc, out = await meshwright("ledger", "audit", "--as", "client", env=up.env())
    assert rc == 1 and "PERMISSION_DENIED (ROLE_NOT_ALLOWED)" in out, out


async def test_cli_refusals_are_one_clear_line(up: Up, tmp_path: Path) -> None:
    # A client may not mint: PERMISSION_DENIED, saying who called and what to do.
    rc, out = await meshwright(
        "account", "create", "dave", "--balance", "5", "--as", "client", env=up.env()
    )
    assert rc == 1, out
    assert out.strip().count("\n") == 0, out
    assert out.startswith("error PERMISSION_DENIED (PRIVILEGED_FIELD)"), out
    assert "calling as client:dev" in out and "--as admin" in out, out

    # No token anywhere (another config dir): UNAUTHENTICATED, naming where it looked.
    empty = tmp_path / "nothing-here"
    rc, out = await meshwright("workflow", "list", env=cli_env(empty, MESHWRIGHT_TARGET=up.grpc))
    assert rc == 1, out
    assert out.strip().count("\n") == 0, out
    assert out.startswith("error UNAUTHENTICATED (TOKEN_MISSING)"), out
    assert str(empty / "client.token") in out, out

    # A token the mesh did not sign.
    rc, out = await meshwright("workflow", "list", "--token", "not.a.jwt", env=up.env())
    assert rc == 1 and "UNAUTHENTICATED (TOKEN_INVALID)" in out, out
    assert "Traceback" not in out

    # --as names a token file that is not there: said before any call.
    rc, out = await meshwright(
        "agents", "--as", "admin", env=cli_env(empty, MESHWRIGHT_TARGET=up.grpc)
    )
    assert rc == 1 and "no admin token at" in out, out


async def test_token_create_signs_with_the_dev_key(up: Up) -> None:
    started = time.time()
    rc, out = await meshwright(
        "token", "create", "--role", "client", "--subject", "erin", "--ttl", "10m", env=up.env()
    )
    assert rc == 0, out
    token = out.strip()
    assert "\n" not in token
    verifier = verifier_from_files(public_key=str(up.config / "signing-key.pub.pem"))
    principal = verifier.verify(token)
    assert (principal.role, principal.subject) == (Role.CLIENT, "erin")
    import jwt

    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert started + 600 - 5 <= exp <= time.time() + 600 + 1

    # The mesh takes it, from --token and from MESHWRIGHT_TOKEN; erin is not dev.
    rc, out = await meshwright("workflow", "list", "--token", token, env=up.env())
    assert rc == 0, out
    rc, out = await meshwright("account", "get", "demo", env=up.env(MESHWRIGHT_TOKEN=token))
    assert rc == 1 and "NOT_OWNER" in out and "calling as client:erin" in out, out


async def test_token_create_refuses_bad_input_and_a_missing_key(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "no-key-here")
    rc, out = await meshwright("token", "create", "--role", "client", "--subject", "x", env=env)
    assert rc == 2 and "no signing key at" in out and "--private-key" in out, out
    rc, out = await meshwright(
        "token", "create", "--role", "client", "--subject", "x", "--ttl=-1h", env=env
    )
    assert rc == 2 and "not a positive duration" in out, out
    rc, out = await meshwright("token", "create", "--role", "root", "--subject", "x", env=env)
    assert rc == 2 and "invalid choice" in out, out


async def test_token_ttls_read_as_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "1h", "7d", "1.5h")] == [
        90,
        90,
        1800,
        3600,
        7 * 86_400,
        5400,
    ]
    for bad in ("0", "0s", "-1h", "1w", "soon", "", "h", "1 h"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)
