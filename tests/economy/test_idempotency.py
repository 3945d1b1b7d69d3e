"""request_id: a retry replays the first response; other parameters are refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf import message

from meshwright.economy import InsufficientFunds
from meshwright.economy.idempotency import IdempotencyCache, idempotency_key
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import InvalidArgument
from tests.economy.conftest import Env, fields


async def setup(env: Env) -> None:
    await env.account("alice", 10_000, stake=1_000)
    await env.account("bob", 1_000)
    await env.remote.call(
        "OpenEscrow", pb.OpenEscrowRequest(escrow_id="e1", payer_account_id="alice", amount=500)
    )


def cases(proposal_id: str) -> list[tuple[str, message.Message, message.Message]]:
    """(method, request, the same request with one parameter changed)."""
    return [
        (
            "CreateAccount",
            pb.CreateAccountRequest(account_id="carol", initial_balance=5, request_id="k1"),
            pb.CreateAccountRequest(account_id="carol", initial_balance=6, request_id="k1"),
        ),
        (
            "Transfer",
            pb.TransferRequest(
                from_account_id="alice", to_account_id="bob", amount=7, request_id="k2"
            ),
            pb.TransferRequest(
                from_account_id="alice", to_account_id="bob", amount=8, request_id="k2"
            ),
        ),
        (
            "Stake",
            pb.StakeRequest(account_id="bob", amount=10, request_id="k3"),
            pb.StakeRequest(account_id="alice", amount=10, request_id="k3"),
        ),
        (
            "Unstake",
            pb.UnstakeRequest(account_id="alice", amount=10, request_id="k4"),
            pb.UnstakeRequest(account_id="alice", amount=11, request_id="k4"),
        ),
        (
            "OpenEscrow",
            pb.OpenEscrowRequest(payer_account_id="alice", amount=20, request_id="k5"),
            pb.OpenEscrowRequest(
                payer_account_id="alice", amount=20, reference="other", request_id="k5"
            ),
        ),
        (
            "CaptureEscrow",
            pb.CaptureEscrowRequest(
                escrow_id="e1", payee_account_id="bob", amount=30, request_id="k6"
            ),
            pb.CaptureEscrowRequest(
                escrow_id="e1", payee_account_id="bob", amount=30, memo="x", request_id="k6"
            ),
        ),
        (
            "CreateProposal",
            pb.CreateProposalRequest(proposer_account_id="alice", title="t", request_id="k7"),
            pb.CreateProposalRequest(proposer_account_id="alice", title="u", request_id="k7"),
        ),
        (
            "CastVote",
            pb.CastVoteRequest(
                proposal_id=proposal_id,
                voter_account_id="alice",
                choice=pb.VOTE_CHOICE_YES,
                request_id="k8",
            ),
            pb.CastVoteRequest(
                proposal_id=proposal_id,
                voter_account_id="alice",
                choice=pb.VOTE_CHOICE_NO,
                request_id="k8",
            ),
        ),
        (
            "ReleaseEscrow",
            pb.ReleaseEscrowRequest(escrow_id="e1", request_id="k9"),
            pb.ReleaseEscrowRequest(escrow_id="other", request_id="k9"),
        ),
    ]


async def test_every_mutation_replays_and_refuses_other_parameters(env: Env) -> None:
    await setup(env)
    proposal = await env.remote.call(
        "CreateProposal", pb.CreateProposalRequest(proposer_account_id="alice", title="p")
    )
    for method, request, changed in cases(proposal.proposal.proposal_id):
        first = await env.remote.call(method, request)
        audit = env.store.audit()
        env.clock.advance(1)  # a replay must not even pick up a new timestamp
        again = await env.remote.call(method, request)
        assert again == first, method
        assert env.store.audit() == audit, method  # applied once
        with pytest.raises(InvalidArgument) as reused:
            await env.remote.call(method, changed)
        assert fields(reused.value) == ["request_id"], method
        assert env.store.audit() == audit, method
    assert env.store.audit().conserved


async def test_transfer_replay_returns_first_snapshot_and_applies_once(env: Env) -> None:
    await setup(env)
    request = pb.TransferRequest(
        from_account_id="alice", to_account_id="bob", amount=100, request_id="pay-1"
    )
    first = await env.remote.call("Transfer", request)
    await env.remote.call(
        "Transfer", pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=1)
    )
    again = await env.remote.call("Transfer", request)
    assert again == first  # the first response, not today's balances
    assert (await env.get("bob")).balance == 1_101


async def test_concurrent_retries_apply_once(env: Env) -> None:
    await setup(env)
    request = pb.CaptureEscrowRequest(
        escrow_id="e1", payee_account_id="bob", amount=40, request_id="task-7"
    )
    replies = await asyncio.gather(*(env.remote.call("CaptureEscrow", request) for _ in range(20)))
    assert all(r == replies[0] for r in replies)
    assert (await env.get("bob")).balance == 1_040


async def test_failures_are_not_remembered(env: Env) -> None:
    await setup(env)
    request = pb.TransferRequest(
        from_account_id="bob", to_account_id="alice", amount=2_000, request_id="retry-me"
    )
    with pytest.raises(InsufficientFunds):
        await env.remote.call("Transfer", request)
    await env.remote.call(
        "Transfer", pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=1_000)
    )
    reply = await env.remote.call("Transfer", request)  # now it can be covered
    assert reply.from_account.balance == 0


async def test_no_request_id_means_no_dedup(env: Env) -> None:
    await setup(env)
    request = pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=5)
    a: Any = await env.remote.call("Transfer", request)
    b: Any = await env.remote.call("Transfer", request)
    assert a.transaction.transaction_id != b.transaction.transaction_id
    assert (await env.get("bob")).balance == 1_010


def test_cache_is_a_bounded_lru() -> None:
    cache = IdempotencyCache(capacity=3)
    keys = [idempotency_key(f"r{i}", "Op", i) for i in range(4)]
    for i, key in enumerate(keys[:3]):
        cache.remember(key, i)
    assert cache.replay(keys[0], int) == 0  # touch r0: r1 is now the oldest
    cache.remember(keys[3], 3)
    assert len(cache) == 3
    assert cache.replay(keys[1], int) is None
    assert [cache.replay(keys[i], int) for i in (0, 2, 3)] == [0, 2, 3]
    assert idempotency_key("", "Op", 1) is None
