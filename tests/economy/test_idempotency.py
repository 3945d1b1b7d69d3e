"""request_id: a retry replays the first result; other parameters are refused; keys are
scoped per caller (the mesh's services share one scope) and live for a TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from meshwright.economy import Economy, InsufficientFunds, VoteChoice
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import InvalidArgument
from tests.economy.conftest import Env, Ledger, as_caller, fields, open_account

pytestmark = pytest.mark.timeout(60)

Call = Callable[[], Awaitable[Any]]


async def setup(eco: Economy) -> str:
    await open_account(eco, "alice", 10_000, gov=1_000, stake=1_000)
    await open_account(eco, "bob", 1_000, gov=100)
    await eco.mint("system:rewards", 1_000)
    await eco.open_escrow("alice", 500, escrow_id="e1")
    await eco.open_escrow("alice", 500, escrow_id="e2")
    return (await eco.create_proposal("alice", "p")).proposal_id


async def state(eco: Economy) -> tuple[Any, ...]:
    """Everything a mutation could change."""
    accounts = [await eco.get_account(a) for a in ("alice", "bob")]
    return (
        await eco.audit(),
        accounts,
        (await eco.list_escrows()).items,
        (await eco.list_proposals()).items,
        (await eco.list_accounts()).items,
    )


def cases(eco: Economy, proposal_id: str) -> list[tuple[str, Call, Call]]:
    """(name, a mutation with a request id, the same one with one parameter changed)."""
    return [
        (
            "create_account",
            lambda: eco.create_account("carol", initial_balance=5, request_id="k1"),
            lambda: eco.create_account("carol", initial_balance=6, request_id="k1"),
        ),
        (
            "mint",
            lambda: eco.mint("bob", 5, request_id="k2"),
            lambda: eco.mint("bob", 5, memo="x", request_id="k2"),
        ),
        (
            "transfer",
            lambda: eco.transfer("alice", "bob", 7, request_id="k3"),
            lambda: eco.transfer("alice", "bob", 7, asset=2, request_id="k3"),
        ),
        (
            "stake",
            lambda: eco.stake("bob", 10, request_id="k4"),
            lambda: eco.stake("bob", 11, request_id="k4"),
        ),
        (
            "unstake",
            lambda: eco.unstake("bob", 1, request_id="k5"),
            lambda: eco.unstake("bob", 2, request_id="k5"),
        ),
        (
            "open_escrow",
            lambda: eco.open_escrow("alice", 20, request_id="k6"),
            lambda: eco.open_escrow("alice", 20, reference="other", request_id="k6"),
        ),
        (
            "capture_escrow",
            lambda: eco.capture_escrow("e1", "bob", 30, request_id="k7"),
            lambda: eco.capture_escrow("e1", "bob", 30, memo="x", request_id="k7"),
        ),
        (
            "distribute_rewards",
            lambda: eco.distribute_rewards(100, request_id="k9"),
            lambda: eco.distribute_rewards(101, request_id="k9"),
        ),
        (
            "create_proposal",
            lambda: eco.create_proposal("alice", "t", request_id="k10"),
            lambda: eco.create_proposal("alice", "u", request_id="k10"),
        ),
        (
            "cast_vote",
            lambda: eco.cast_vote(proposal_id, "alice", VoteChoice.YES, request_id="k11"),
            lambda: eco.cast_vote(proposal_id, "alice", VoteChoice.NO, request_id="k11"),
        ),
    ]


async def test_every_mutation_replays_and_refuses_other_parameters(
    eco: Economy, ledger: Ledger
) -> None:
    proposal_id = await setup(eco)
    for name, call, changed in cases(eco, proposal_id):
        first = await call()
        before = await state(eco)
        ledger.clock.advance(1)  # a replay must not even pick up a new timestamp
        assert await call() == first, name
        assert await state(eco) == before, name  # applied once
        with pytest.raises(InvalidArgument) as reused:
            await changed()
        assert fields(reused.value) == ["request_id"], name
        assert await state(eco) == before, name
    assert (await eco.audit()).ok


async def test_transfer_replay_returns_the_first_snapshot(eco: Economy) -> None:
    await setup(eco)
    first = await eco.transfer("alice", "bob", 100, request_id="pay-1")
    await eco.transfer("alice", "bob", 1)
    assert await eco.transfer("alice", "bob", 100, request_id="pay-1") == first
    assert (await eco.get_account("bob")).balance == 1_101


async def test_concurrent_retries_apply_once(eco: Economy) -> None:
    await setup(eco)
    replies = await asyncio.gather(
        *(eco.capture_escrow("e1", "bob", 40, request_id="task-7") for _ in range(20))
    )
    assert all(r == replies[0] for r in replies)
    assert (await eco.get_account("bob")).balance == 1_040


async def test_failures_are_not_remembered(eco: Economy) -> None:
    await setup(eco)
    with pytest.raises(InsufficientFunds):
        await eco.transfer("bob", "alice", 2_000, request_id="retry-me")
    await eco.transfer("alice", "bob", 1_000)
    done = await eco.transfer("bob", "alice", 2_000, request_id="retry-me")  # now covered
    assert done.from_account.balance == 0


async def test_no_request_id_means_no_dedup(eco: Economy) -> None:
    await setup(eco)
    a = await eco.transfer("alice", "bob", 5)
    b = await eco.transfer("alice", "bob", 5)
    assert a.transaction.transaction_id != b.transaction.transaction_id
    assert (await eco.get_account("bob")).balance == 1_010


# A replay is the first result even when the state it checked has changed since -----------


async def test_a_retried_unstake_of_the_whole_stake_replays(eco: Economy) -> None:
    """The retry of an applied unstake must replay it, not re-check the stake it removed."""
    await open_account(eco, "alice", stake=100)
    first = await eco.unstake("alice", 100, request_id="u1")
    assert await eco.unstake("alice", 100, request_id="u1") == first


async def test_a_retried_capture_replays_after_the_escrow_closed(eco: Economy) -> None:
    """A workflow that retries a capture after releasing the escrow gets its capture back."""
    await eco.create_account("payer", initial_balance=100)
    await eco.create_account("agent")
    await eco.open_escrow("payer", 100, escrow_id="e1")
    by_request = await eco.capture_escrow("e1", "agent", 10, request_id="c1")
    by_task = await eco.capture_escrow("e1", "agent", 20, task_id="t1")
    await eco.release_escrow("e1")
    assert await eco.capture_escrow("e1", "agent", 10, request_id="c1") == by_request
    assert await eco.capture_escrow("e1", "agent", 20, task_id="t1") == by_task


async def test_a_retried_release_replays_its_refund(eco: Economy) -> None:
    """The first release refunded and closed; its retry must return that, transaction
    included (not "already closed, nothing moved"), and a reuse of its request id for
    another escrow is refused."""
    await setup(eco)
    first = await eco.release_escrow("e1", request_id="k8")
    assert first.transaction is not None
    before = await state(eco)
    with pytest.raises(InvalidArgument) as reused:
        await eco.release_escrow("e2", request_id="k8")
    assert fields(reused.value) == ["request_id"]
    assert await state(eco) == before
    assert await eco.release_escrow("e1", request_id="k8") == first


async def test_a_retried_vote_replays_after_the_proposal_closed(eco: Economy) -> None:
    await open_account(eco, "alice", stake=100)
    proposal = await eco.create_proposal("alice", "p")
    first = await eco.cast_vote(proposal.proposal_id, "alice", VoteChoice.YES, request_id="v1")
    await eco.close_proposal(proposal.proposal_id)
    again = await eco.cast_vote(proposal.proposal_id, "alice", VoteChoice.YES, request_id="v1")
    assert again == first


async def test_a_retried_proposal_replays_after_the_stake_left(eco: Economy) -> None:
    await open_account(eco, "alice", stake=100)
    first = await eco.create_proposal("alice", "p", request_id="p1")
    await eco.unstake("alice", 100)
    assert await eco.create_proposal("alice", "p", request_id="p1") == first


# Scope and lifetime --------------------------------------------------------------------


async def test_keys_are_scoped_per_caller(eco: Economy) -> None:
    await setup(eco)
    with as_caller("client", "alice"):
        mine = await eco.transfer("alice", "bob", 1, request_id="same")
    with as_caller("client", "bob"):
        # Bob's "same" is his own: another request, applied.
        theirs = await eco.transfer("bob", "alice", 2, request_id="same")
    assert mine.transaction.transaction_id != theirs.transaction.transaction_id
    with as_caller("admin", "ops"):
        ops = await eco.transfer("alice", "bob", 1, request_id="same")
    assert ops.transaction.transaction_id != mine.transaction.transaction_id
    outside = await eco.transfer("alice", "bob", 1, request_id="same")  # no call: internal
    assert outside.transaction.transaction_id not in {
        mine.transaction.transaction_id,
        ops.transaction.transaction_id,
    }
    with as_caller("client", "alice"):
        assert await eco.transfer("alice", "bob", 1, request_id="same") == mine
    assert (await eco.get_account("bob")).balance == 1_000 + 1 - 2 + 1 + 1


async def test_the_mesh_services_share_one_scope(eco: Economy) -> None:
    """A workflow replica that takes over retries its predecessor's calls."""
    await setup(eco)
    with as_caller("service", "workflow-a"):
        first = await eco.capture_escrow("e1", "bob", 5, request_id="wf-1/t1")
    with as_caller("service", "workflow-b"):
        assert await eco.capture_escrow("e1", "bob", 5, request_id="wf-1/t1") == first
        with pytest.raises(InvalidArgument) as other:
            await eco.capture_escrow("e1", "bob", 6, request_id="wf-1/t1")
    assert fields(other.value) == ["request_id"]
    assert (await eco.get_account("bob")).balance == 1_005


async def test_a_key_lives_for_the_ttl_and_no_longer(ledger: Ledger) -> None:
    ttl = 10.0 if ledger.kind == "memory" else 0.3
    eco = ledger.economy(idempotency_ttl_s=ttl)
    await setup(eco)
    first = await eco.transfer("alice", "bob", 1, request_id="k")
    if ledger.kind == "memory":  # the memory store's clock is the fake one: exact bounds
        ledger.clock.advance(ttl - 0.001)
        assert await eco.transfer("alice", "bob", 1, request_id="k") == first
        ledger.clock.advance(0.001)  # exactly the ttl: forgotten
    else:
        assert await eco.transfer("alice", "bob", 1, request_id="k") == first
        await ledger.wait_real(ttl + 0.2)
    again = await eco.transfer("alice", "bob", 1, request_id="k")
    assert again.transaction.transaction_id != first.transaction.transaction_id
    assert (await eco.get_account("bob")).balance == 1_002


def test_the_ttl_must_be_positive(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        ledger.economy(idempotency_ttl_s=0)


# Over the wire ----------------------------------------------------------------------


async def test_retries_over_the_wire_replay(env: Env) -> None:
    await env.account("alice", 1_000)
    await env.account("bob")
    request = pb.TransferRequest(
        from_account_id="alice", to_account_id="bob", amount=10, request_id="w1"
    )
    first = await env.remote.call("Transfer", request)
    assert await env.remote.call("Transfer", request) == first
    assert await env.local.call("Transfer", request) == first  # one scope: the same caller
    with pytest.raises(InvalidArgument) as reused:
        await env.remote.call(
            "Transfer",
            pb.TransferRequest(
                from_account_id="alice", to_account_id="bob", amount=11, request_id="w1"
            ),
        )
    assert fields(reused.value) == ["request_id"]
    assert (await env.get("bob")).balance == 10
