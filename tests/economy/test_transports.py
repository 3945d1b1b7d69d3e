"""The same calls through the wire and in-process raise identical errors."""

from __future__ import annotations

import pytest
from google.protobuf import message

from meshwright.economy import (
    EscrowClosed,
    EscrowExhausted,
    InsufficientFunds,
    InsufficientStake,
    ProposalClosed,
    StakeRequired,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import (
    InvalidArgument,
    LocalServiceClient,
    MeshError,
    NotFound,
    RemoteServiceClient,
)
from tests.economy.conftest import Env, fields

Client = RemoteServiceClient | LocalServiceClient


async def test_errors_are_identical(env: Env, client: Client) -> None:
    await env.account("alice", 100, stake=10)
    await env.account("bob")
    await env.remote.call(
        "OpenEscrow", pb.OpenEscrowRequest(escrow_id="e1", payer_account_id="alice", amount=20)
    )

    with pytest.raises(InvalidArgument) as bad:
        await client.call("Transfer", pb.TransferRequest(from_account_id="x", to_account_id="x"))
    assert (bad.value.reason, fields(bad.value)) == (
        "INVALID_ARGUMENT",
        ["to_account_id", "amount"],
    )

    with pytest.raises(NotFound) as missing:
        await client.call("GetAccount", pb.GetAccountRequest(account_id="ghost"))
    assert (missing.value.reason, missing.value.metadata) == ("NOT_FOUND", {"account_id": "ghost"})

    expectations: list[tuple[type[MeshError], str, message.Message, str]] = [
        (
            InsufficientFunds,
            "INSUFFICIENT_FUNDS",
            pb.TransferRequest(from_account_id="bob", to_account_id="alice", amount=1),
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
            pb.CaptureEscrowRequest(escrow_id="e1", payee_account_id="bob", amount=21),
            "CaptureEscrow",
        ),
        (
            StakeRequired,
            "STAKE_REQUIRED",
            pb.CreateProposalRequest(proposer_account_id="bob", title="t"),
            "CreateProposal",
        ),
    ]
    for cls, reason, request, method in expectations:
        with pytest.raises(cls) as err:
            await client.call(method, request)
        assert err.value.reason == reason

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


async def test_responses_are_identical(env: Env) -> None:
    await env.account("alice", 100)
    request = pb.GetAccountRequest(account_id="alice")
    assert await env.remote.call("GetAccount", request) == await env.local.call(
        "GetAccount", request
    )
