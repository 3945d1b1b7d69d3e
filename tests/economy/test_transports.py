"""The same calls through the wire and in-process raise identical errors and answer the
same responses, for the older RPCs and the ledger's new ones."""

from __future__ import annotations

import pytest
from google.protobuf import message

from meshwright.economy import (
    EscrowClosed,
    EscrowExhausted,
    EscrowExpired,
    InsufficientFunds,
    InsufficientStake,
    MintLimitExceeded,
    ProposalClosed,
    StakeRequired,
    TaskAlreadyPaid,
)
from meshwright.economy.model import INT64_MAX
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import (
    InvalidArgument,
    LocalServiceClient,
    MeshError,
    NotFound,
    RemoteServiceClient,
)
from tests.economy.conftest import Env, fields

pytestmark = pytest.mark.timeout(60)

Client = RemoteServiceClient | LocalServiceClient


async def test_errors_are_identical(env: Env, client: Client) -> None:
    await env.account("alice", 100, stake=10)
    await env.account("bob")
    await env.remote.call(
        "OpenEscrow", pb.OpenEscrowRequest(escrow_id="e1", payer_account_id="alice", amount=20)
    )
    await env.remote.call(
        "OpenEscrow",
        pb.OpenEscrowRequest(
            escrow_id="short", payer_account_id="alice", amount=5, ttl={"seconds": 1}
        ),
    )
    await env.remote.call(
        "CaptureEscrow",
        pb.CaptureEscrowRequest(escrow_id="e1", payee_account_id="bob", amount=1, task_id="t1"),
    )

    with pytest.raises(InvalidArgument) as bad:
        await client.call("Transfer", pb.TransferRequest(from_account_id="x", to_account_id="x"))
    assert (bad.value.reason, fields(bad.value)) == (
        "INVALID_ARGUMENT",
        ["to_account_id", "amount"],
    )
    with pytest.raises(InvalidArgument) as reserved:
        await client.call("CreateAccount", pb.CreateAccountRequest(account_id="system:mine"))
    assert fields(reserved.value) == ["account_id"]

    with pytest.raises(NotFound) as missing:
        await client.call("GetAccount", pb.GetAccountRequest(account_id="ghost"))
    assert (missing.value.reason, missing.value.metadata) == ("NOT_FOUND", {"account_id": "ghost"})

    expectations: list[tuple[type[MeshError], str, message.Message, str]] = [
        (
            InsufficientFunds,
            "INSUFFICIENT_FUNDS",
            pb.TransferRequest(from_account_id="bob", to_account_id="alice", amount=2),
            "Transfer",
        ),
        (
            InsufficientFunds,
            "INSUFFICIENT_FUNDS",
            pb.TransferRequest(
                from_account_id="alice", to_account_id="bob", amount=1, asset=pb.ASSET_GOV
            ),
            "Transfer",
        ),
        (
            InsufficientStake,
            "INSUFFICIENT_STAKE",
            pb.UnstakeRequest(account_id="alice", amount=11),
            "Unstake",
        ),
        (
            EscrowExhausted,
            "ESCROW_EXHAUSTED",
            pb.CaptureEscrowRequest(escrow_id="e1", payee_account_id="bob", amount=20),
            "CaptureEscrow",
        ),
        (
            TaskAlreadyPaid,
            "TASK_ALREADY_PAID",
            pb.CaptureEscrowRequest(
                escrow_id="e1", payee_account_id="alice", amount=1, task_id="t1"
            ),
            "CaptureEscrow",
        ),
        (
            StakeRequired,
            "STAKE_REQUIRED",
            pb.CreateProposalRequest(proposer_account_id="bob", title="t"),
            "CreateProposal",
        ),
        (
            MintLimitExceeded,
            "MINT_LIMIT_EXCEEDED",
            pb.MintRequest(account_id="bob", amount=INT64_MAX),
            "Mint",
        ),
    ]
    for cls, reason, request, method in expectations:
        with pytest.raises(cls) as err:
            await client.call(method, request)
        assert err.value.reason == reason, method

    env.clock.advance(1)
    with pytest.raises(EscrowExpired):
        await client.call("RenewEscrow", pb.RenewEscrowRequest(escrow_id="short"))
    await client.call("ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id="e1"))
    with pytest.raises(EscrowClosed):
        await client.call(
            "CaptureEscrow",
            pb.CaptureEscrowRequest(escrow_id="e1", payee_account_id="bob", amount=1),
        )
    proposal = await client.call(
        "CreateProposal", pb.CreateProposalRequest(proposer_account_id="alice", title="t")
    )
    pid = proposal.proposal.proposal_id
    await client.call("CloseProposal", pb.CloseProposalRequest(proposal_id=pid))
    with pytest.raises(ProposalClosed) as closed:
        await client.call(
            "CastVote",
            pb.CastVoteRequest(
                proposal_id=pid, voter_account_id="alice", choice=pb.VOTE_CHOICE_YES
            ),
        )
    assert closed.value.reason == "PROPOSAL_CLOSED"


async def test_unknown_enum_values_are_invalid_arguments(env: Env, client: Client) -> None:
    """Proto3 enums are open: a number the contract does not name is INVALID_ARGUMENT."""
    await env.account("alice", 10)
    await env.account("bob")
    cases: list[tuple[str, message.Message, str]] = [
        (
            "Transfer",
            pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=1, asset=9),
            "asset",
        ),  # type: ignore[arg-type]  # noqa: E501
        ("Mint", pb.MintRequest(account_id="alice", amount=1, asset=9), "asset"),  # type: ignore[arg-type]
        ("ListAccounts", pb.ListAccountsRequest(kind=99), "kind"),  # type: ignore[arg-type]
        ("ListEscrows", pb.ListEscrowsRequest(state=99), "state"),  # type: ignore[arg-type]
        ("ListProposals", pb.ListProposalsRequest(state=99), "state"),  # type: ignore[arg-type]
        ("ListTransactions", pb.ListTransactionsRequest(account_id="alice", asset=9), "asset"),  # type: ignore[arg-type]  # noqa: E501
        ("ListTransactions", pb.ListTransactionsRequest(account_id="alice", kind=99), "kind"),  # type: ignore[arg-type]  # noqa: E501
    ]
    for method, request, field in cases:
        with pytest.raises(InvalidArgument) as err:
            await client.call(method, request)
        assert fields(err.value) == [field], method


async def test_responses_are_identical(env: Env) -> None:
    await env.account("alice", 100, gov=5, stake=5)
    for method, request in [
        ("GetAccount", pb.GetAccountRequest(account_id="alice")),
        ("ListAccounts", pb.ListAccountsRequest()),
        ("GetParameters", pb.GetParametersRequest()),
        ("AuditLedger", pb.AuditLedgerRequest()),
        ("ListTransactions", pb.ListTransactionsRequest(account_id="alice")),
    ]:
        assert await env.remote.call(method, request) == await env.local.call(method, request)
