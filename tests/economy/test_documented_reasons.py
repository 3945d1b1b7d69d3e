"""Every error reason the economy's servers send is documented in economy.proto's comments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import meshwright.economy.errors as economy_errors
from meshwright.economy import ECONOMY_SERVICE
from meshwright.mesh.errors import MeshError
from meshwright.mesh.pipeline import Pipeline  # noqa: F401  (registers the pipeline's reasons)
from meshwright.mesh.server import MeshServer  # noqa: F401  (REQUEST_UNDECODABLE)

PROTO = Path(__file__).resolve().parents[2] / "protos/meshwright/economy/v1/economy.proto"
PIPELINE_MODULES = {
    "meshwright.mesh.auth",
    "meshwright.mesh.policy",
    "meshwright.mesh.limits",
    "meshwright.mesh.server",
}

# The reasons each RPC's own code (domain and store) can send, beyond the pipeline's.
RAISED_BY: dict[str, set[str]] = {
    "CreateAccount": {"INVALID_ARGUMENT", "ALREADY_EXISTS", "MINT_LIMIT_EXCEEDED"},
    "Mint": {"INVALID_ARGUMENT", "NOT_FOUND", "MINT_LIMIT_EXCEEDED"},
    "GetAccount": {"INVALID_ARGUMENT", "NOT_FOUND"},
    "ListAccounts": {"INVALID_ARGUMENT"},
    "Transfer": {"INVALID_ARGUMENT", "NOT_FOUND", "INSUFFICIENT_FUNDS"},
    "ListTransactions": {"INVALID_ARGUMENT", "NOT_FOUND"},
    "Stake": {"INVALID_ARGUMENT", "NOT_FOUND", "INSUFFICIENT_FUNDS"},
    "Unstake": {"INVALID_ARGUMENT", "NOT_FOUND", "INSUFFICIENT_STAKE", "STAKE_LOCKED"},
    "OpenEscrow": {"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "INSUFFICIENT_FUNDS"},
    "CaptureEscrow": {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ESCROW_CLOSED",
        "ESCROW_EXHAUSTED",
        "ESCROW_EXPIRED",
        "TASK_ALREADY_PAID",
        "PAYEE_NOT_OWNED",
    },
    "ReleaseEscrow": {"INVALID_ARGUMENT", "NOT_FOUND"},
    "RenewEscrow": {"INVALID_ARGUMENT", "NOT_FOUND", "ESCROW_CLOSED", "ESCROW_EXPIRED"},
    "GetEscrow": {"INVALID_ARGUMENT", "NOT_FOUND"},
    "ListEscrows": {"INVALID_ARGUMENT"},
    "ReportTaskFailure": {"INVALID_ARGUMENT", "NOT_FOUND"},
    "DistributeRewards": {"INVALID_ARGUMENT", "INSUFFICIENT_FUNDS"},
    "CreateProposal": {"INVALID_ARGUMENT", "NOT_FOUND", "STAKE_REQUIRED"},
    "CastVote": {"INVALID_ARGUMENT", "NOT_FOUND", "PROPOSAL_CLOSED", "STAKE_REQUIRED"},
    "GetProposal": {"INVALID_ARGUMENT", "NOT_FOUND"},
    "ListProposals": {"INVALID_ARGUMENT"},
    "CloseProposal": {"INVALID_ARGUMENT", "NOT_FOUND", "VOTING_OPEN"},
    "GetParameters": set(),
    "AuditLedger": set(),
}
# Reasons any mutation may send (a step refused as stale too often), documented once, in the
# service comment.
SHARED: set[str] = {"LEDGER_CONTENDED"}
# Policy refusals an RPC's own comment names, because they are its rules (the rest are
# documented once, in the service comment).
POLICY_RULES: dict[str, set[str]] = {
    "CreateAccount": {"PRIVILEGED_FIELD"},
    "Mint": {"ROLE_NOT_ALLOWED"},
    "GetAccount": {"NOT_OWNER"},
    "ListAccounts": {"NOT_OWNER"},
    "Transfer": {"NOT_OWNER"},
    "ListTransactions": {"NOT_OWNER"},
    "Stake": {"NOT_OWNER"},
    "Unstake": {"NOT_OWNER"},
    "OpenEscrow": {"ROLE_NOT_ALLOWED"},
    "CaptureEscrow": {"ROLE_NOT_ALLOWED"},
    "ReleaseEscrow": {"ROLE_NOT_ALLOWED"},
    "RenewEscrow": {"ROLE_NOT_ALLOWED"},
    "GetEscrow": {"NOT_OWNER"},
    "ListEscrows": {"NOT_OWNER"},
    "ReportTaskFailure": {"ROLE_NOT_ALLOWED"},
    "DistributeRewards": {"ROLE_NOT_ALLOWED"},
    "CreateProposal": {"NOT_OWNER"},
    "CastVote": {"NOT_OWNER"},
    "AuditLedger": {"ROLE_NOT_ALLOWED"},
}


def comments() -> tuple[str, dict[str, str]]:
    """The service's comment and each RPC's comment, as text."""
    text = PROTO.read_text()
    blocks = re.findall(r"((?:[ \t]*//[^\n]*\n)+)[ \t]*(service|rpc) (\w+)", text)
    by_name = {name: re.sub(r"\s*//\s?", " ", block) for block, _, name in blocks}
    return by_name["EconomyService"], by_name


def test_every_rpc_is_listed() -> None:
    assert set(RAISED_BY) == {m.name for m in ECONOMY_SERVICE.methods}


@pytest.mark.parametrize("rpc", sorted(RAISED_BY))
def test_each_rpc_documents_its_reasons(rpc: str) -> None:
    _, rpcs = comments()
    missing = sorted(r for r in RAISED_BY[rpc] | POLICY_RULES.get(rpc, set()) if r not in rpcs[rpc])
    assert missing == [], f"{rpc}'s comment does not name {missing}"


def test_every_economy_reason_is_documented_on_an_rpc() -> None:
    own = {
        cls.reason
        for cls in vars(economy_errors).values()
        if isinstance(cls, type)
        and issubclass(cls, MeshError)
        and "reason" in cls.__dict__
        and cls.__module__ == economy_errors.__name__
    }
    assert {"VOTING_OPEN", "LEDGER_CONTENDED", "TASK_ALREADY_PAID"} <= own
    # So each is checked on its RPC above, or once in the service comment below.
    assert own <= set().union(*RAISED_BY.values(), SHARED)


def test_the_service_comment_documents_the_shared_reasons() -> None:
    service, _ = comments()
    missing = sorted(r for r in SHARED if r not in service)
    assert missing == [], f"the EconomyService comment does not name {missing}"


def test_the_service_comment_documents_the_pipelines_reasons() -> None:
    service, _ = comments()
    pipeline = {
        reason for reason, cls in MeshError.reasons().items() if cls.__module__ in PIPELINE_MODULES
    }
    assert {"TOKEN_MISSING", "NOT_OWNER", "ROLE_NOT_ALLOWED", "PRIVILEGED_FIELD"} <= pipeline
    missing = sorted(r for r in pipeline if r not in service)
    assert missing == [], f"the EconomyService comment does not name {missing}"
