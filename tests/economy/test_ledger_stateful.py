"""A Hypothesis state machine drives the economy on both ledger backends against a model.

Random mints, transfers (with a fee), stakes, unstakes (with an unbonding period),
escrows (open, capture with tier and streak bonuses, release, renew, expiry by moving a
fake clock and running maintenance), reward distributions, proposals, votes and closes,
with request ids retried (same parameters: the first result, applied once) and reused
(other parameters: INVALID_ARGUMENT on request_id). After every step: each asset's supply
(minus system:issuance's balance) is what was minted and what the accounts hold, no
balance but issuance's is negative, the audit's replay equals the stored balances, and
every user account, the rewards pool and the treasury hold what the model says.

A retry may come right after the first try or at any later step, when the ledger would
refuse the request now (the stake it unstaked is gone, the escrow or proposal closed,
the stakers left): it still answers the first result.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from meshwright.economy import (
    Asset,
    Economy,
    EscrowClosed,
    EscrowExhausted,
    EscrowExpired,
    EscrowState,
    InsufficientFunds,
    InsufficientStake,
    LedgerStore,
    MemoryLedgerStore,
    Params,
    ProposalClosed,
    StakeLocked,
    StakeRequired,
    TaskAlreadyPaid,
    Tier,
    TierLevel,
    TierTable,
    VoteChoice,
    pro_rata,
)
from meshwright.mesh import InvalidArgument, MeshError
from tests.economy.conftest import FakeClock

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")

USERS = ("u0", "u1", "u2", "u3")
FEE_BPS = 100
UNBONDING_S = 10.0
ESCROW_TTL_S = 20.0
VOTING_S = 15.0
STREAK_THRESHOLD = 3
STREAK_BPS = 1_000
SILVER_AT = 50
SILVER_BPS = 15_000
PARAMS = Params(
    tiers=TierTable(levels=(TierLevel(Tier.SILVER, SILVER_AT, SILVER_BPS),)),
    transfer_fee_bps=FEE_BPS,
    unbonding_period_s=UNBONDING_S,
    streak_threshold=STREAK_THRESHOLD,
    streak_bonus_bps=STREAK_BPS,
    escrow_ttl_s=ESCROW_TTL_S,
)

users = st.sampled_from(USERS)
assets = st.sampled_from([Asset.CREDIT, Asset.GOV])
amounts = st.integers(min_value=1, max_value=300)


@dataclass
class EscrowModel:
    payer: str
    held: int
    ttl: float
    exp: float
    state: EscrowState = EscrowState.OPEN
    tasks: dict[str, tuple[str, int, Any]] = field(default_factory=dict)


@dataclass
class ProposalModel:
    end: float
    closed: bool = False
    votes: dict[str, int] = field(default_factory=dict)


class LedgerMachine(RuleBasedStateMachine):
    """One economy over one fresh ledger, and the model it must agree with."""

    redis_url = ""
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.store: LedgerStore
        if self.backend == "memory":
            self.store = MemoryLedgerStore(clock=self.clock)
        else:
            from meshwright.economy.redis_store import RedisLedgerStore

            self.store = RedisLedgerStore.from_url(
                self.redis_url, prefix=f"sm-{uuid.uuid4().hex[:12]}", max_connections=4
            )
        self.eco = Economy(
            self.store, params=PARAMS, clock=self.clock, default_voting_period_s=VOTING_S
        )
        self.credit = dict.fromkeys(USERS, 1_000)
        self.gov = dict.fromkeys(USERS, 100)
        self.staked = dict.fromkeys(USERS, 0)
        self.escrowed = dict.fromkeys(USERS, 0)
        self.unbonding = dict.fromkeys(USERS, 0)
        self.streak = dict.fromkeys(USERS, 0)
        self.pool = 500
        self.treasury = 0
        self.minted = {Asset.CREDIT: 1_000 * len(USERS) + 500, Asset.GOV: 100 * len(USERS)}
        self.escrows: dict[str, EscrowModel] = {}
        self.entries: list[tuple[str, int, float]] = []
        self.proposals: dict[str, ProposalModel] = {}
        self.retryable: list[tuple[Callable[[], Awaitable[Any]], Any]] = []
        self.requests = 0
        for user in USERS:
            self.run(self.eco.create_account(user, initial_balance=1_000, initial_gov_balance=100))
        self.run(self.eco.mint("system:rewards", 500))

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def request_id(self, wanted: bool) -> str:
        if not wanted:
            return ""
        self.requests += 1
        return f"r{self.requests}"

    def attempt(self, call: Callable[[], Awaitable[T]], expected: type[MeshError] | None) -> T:
        """Run ``call``: it must raise ``expected``, or succeed when that is None."""
        if expected is None:
            return self.run(call())
        with pytest.raises(expected):
            self.run(call())
        return None  # type: ignore[return-value]

    def retried(
        self, call: Callable[[], Awaitable[Any]], result: Any, request_id: str, *, later: bool
    ) -> None:
        """A retry with the same request id answers the first result (and applies nothing:
        the invariants check the model, which did not move)."""
        if not request_id:
            return
        assert self.run(call()) == result
        if later:
            self.retryable.append((call, result))

    def refused_reuse(self, call: Callable[[], Awaitable[Any]]) -> None:
        with pytest.raises(InvalidArgument) as err:
            self.run(call())
        assert [v.field for v in err.value.violations] == ["request_id"]

    def balance(self, user: str, asset: Asset) -> int:
        return self.credit[user] if asset is Asset.CREDIT else self.gov[user]

    def add(self, user: str, asset: Asset, amount: int) -> None:
        if asset is Asset.CREDIT:
            self.credit[user] += amount
        else:
            self.gov[user] += amount

    def multiplier(self, user: str) -> int:
        return SILVER_BPS if self.staked[user] >= SILVER_AT else 10_000

    def locked(self, user: str) -> int:
        now = self.clock.now
        return max(
            (
                p.votes[user]
                for p in self.proposals.values()
                if not p.closed and now < p.end and user in p.votes
            ),
            default=0,
        )

    # Money in and around ----------------------------------------------------------

    @rule(
        user=users,
        asset=assets,
        amount=amounts,
        rid=st.booleans(),
        reuse=st.booleans(),
        to_pool=st.booleans(),
    )
    def mint(
        self, user: str, asset: Asset, amount: int, rid: bool, reuse: bool, to_pool: bool
    ) -> None:
        target = "system:rewards" if to_pool and asset is Asset.CREDIT else user
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.mint(target, amount, asset=asset, request_id=request_id)

        result = self.attempt(call, None)
        if target == user:
            self.add(user, asset, amount)
        else:
            self.pool += amount
        self.minted[asset] += amount
        self.retried(call, result, request_id, later=True)
        if request_id and reuse:
            self.refused_reuse(
                lambda: self.eco.mint(target, amount + 1, asset=asset, request_id=request_id)
            )

    @rule(
        a=users,
        b=users,
        asset=assets,
        amount=amounts,
        rid=st.booleans(),
        reuse=st.booleans(),
        to_pool=st.booleans(),
    )
    def transfer(
        self, a: str, b: str, asset: Asset, amount: int, rid: bool, reuse: bool, to_pool: bool
    ) -> None:
        to = "system:rewards" if to_pool else b
        assume(a != to)
        fee = amount * FEE_BPS // 10_000 if asset is Asset.CREDIT else 0
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.transfer(a, to, amount, asset=asset, request_id=request_id)

        ok = self.balance(a, asset) >= amount + fee
        result = self.attempt(call, None if ok else InsufficientFunds)
        if not ok:
            return
        self.add(a, asset, -(amount + fee))
        if to == "system:rewards":
            if asset is Asset.CREDIT:
                self.pool += amount
        else:
            self.add(to, asset, amount)
        self.treasury += fee
        self.retried(call, result, request_id, later=True)
        if request_id and reuse:
            self.refused_reuse(
                lambda: self.eco.transfer(a, to, amount, memo="other", request_id=request_id)
            )

    # Stake --------------------------------------------------------------------------

    @rule(user=users, amount=st.integers(1, 100), rid=st.booleans(), reuse=st.booleans())
    def stake(self, user: str, amount: int, rid: bool, reuse: bool) -> None:
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.stake(user, amount, request_id=request_id)

        ok = self.gov[user] >= amount
        result = self.attempt(call, None if ok else InsufficientFunds)
        if not ok:
            return
        self.gov[user] -= amount
        self.staked[user] += amount
        self.retried(call, result, request_id, later=True)
        if request_id and reuse:
            self.refused_reuse(lambda: self.eco.stake(user, amount + 1, request_id=request_id))

    @rule(user=users, amount=st.integers(1, 100), rid=st.booleans(), reuse=st.booleans())
    def unstake(self, user: str, amount: int, rid: bool, reuse: bool) -> None:
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.unstake(user, amount, request_id=request_id)

        if self.staked[user] < amount:
            expected: type[MeshError] | None = InsufficientStake
        elif self.staked[user] - amount < self.locked(user):
            expected = StakeLocked
        else:
            expected = None
        done = self.attempt(call, expected)
        if expected is not None:
            return
        assert done.unbonding is not None
        assert done.unbonding.complete_time == self.clock.now + UNBONDING_S
        self.staked[user] -= amount
        self.unbonding[user] += amount
        self.entries.append((user, amount, self.clock.now + UNBONDING_S))
        self.retried(call, done, request_id, later=True)
        if request_id and reuse:
            self.refused_reuse(lambda: self.eco.unstake(user, amount + 1, request_id=request_id))

    # Escrows ----------------------------------------------------------------------

    @rule(
        payer=users,
        amount=amounts,
        short=st.booleans(),
        rid=st.booleans(),
        reuse=st.booleans(),
    )
    def open_escrow(self, payer: str, amount: int, short: bool, rid: bool, reuse: bool) -> None:
        ttl = 5.0 if short else None
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.open_escrow(payer, amount, ttl_s=ttl, request_id=request_id)

        ok = self.credit[payer] >= amount
        result = self.attempt(call, None if ok else InsufficientFunds)
        if not ok:
            return
        lifetime = ESCROW_TTL_S if ttl is None else ttl
        self.escrows[result.escrow.escrow_id] = EscrowModel(
            payer, amount, lifetime, self.clock.now + lifetime
        )
        self.credit[payer] -= amount
        self.escrowed[payer] += amount
        self.retried(call, result, request_id, later=True)
        if request_id and reuse:
            self.refused_reuse(
                lambda: self.eco.open_escrow(payer, amount, reference="x", request_id=request_id)
            )

    def escrow_error(self, escrow: EscrowModel) -> type[MeshError] | None:
        if escrow.state is EscrowState.EXPIRED or (
            escrow.state is EscrowState.OPEN and escrow.exp <= self.clock.now
        ):
            return EscrowExpired
        if escrow.state is EscrowState.CLOSED:
            return EscrowClosed
        return None

    @precondition(lambda self: self.escrows)
    @rule(
        data=st.data(),
        payee=users,
        amount=st.integers(1, 120),
        task=st.sampled_from(["", "t0", "t1"]),
        rid=st.booleans(),
    )
    def capture(self, data: st.DataObject, payee: str, amount: int, task: str, rid: bool) -> None:
        escrow_id = data.draw(st.sampled_from(sorted(self.escrows)))
        escrow = self.escrows[escrow_id]
        closed = self.escrow_error(escrow)
        request_id = "" if task else self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.capture_escrow(
                escrow_id, payee, amount, task_id=task, request_id=request_id
            )

        if task in escrow.tasks:
            first_payee, first_amount, first = escrow.tasks[task]
            if (first_payee, first_amount) == (payee, amount):
                assert self.run(call()) == first
            else:
                self.attempt(call, TaskAlreadyPaid)
            return
        expected = closed or (EscrowExhausted if escrow.held < amount else None)
        done = self.attempt(call, expected)
        if expected is not None:
            return
        bonus = amount * (self.multiplier(payee) - 10_000) // 10_000
        if self.streak[payee] + 1 >= STREAK_THRESHOLD:
            bonus += amount * STREAK_BPS // 10_000
        paid = min(bonus, self.pool)
        assert done.bonus == paid
        self.pool -= paid
        self.credit[payee] += amount + paid
        self.streak[payee] += 1
        escrow.held -= amount
        escrow.exp = self.clock.now + escrow.ttl
        self.escrowed[escrow.payer] -= amount
        if task:
            escrow.tasks[task] = (payee, amount, done)
        self.retried(call, done, request_id, later=True)

    @precondition(lambda self: self.escrows)
    @rule(data=st.data(), rid=st.booleans())
    def release(self, data: st.DataObject, rid: bool) -> None:
        escrow_id = data.draw(st.sampled_from(sorted(self.escrows)))
        escrow = self.escrows[escrow_id]
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.release_escrow(escrow_id, request_id=request_id)

        done = self.run(call())
        if escrow.state is not EscrowState.OPEN:
            assert done.transaction is None and done.escrow.state is escrow.state
            return
        self.retried(call, done, request_id, later=True)
        assert (done.transaction is None) == (escrow.held == 0)
        self.credit[escrow.payer] += escrow.held
        self.escrowed[escrow.payer] -= escrow.held
        escrow.held = 0
        escrow.state = EscrowState.CLOSED

    @precondition(lambda self: self.escrows)
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        escrow_id = data.draw(st.sampled_from(sorted(self.escrows)))
        escrow = self.escrows[escrow_id]
        expected = self.escrow_error(escrow)
        renewed = self.attempt(lambda: self.eco.renew_escrow(escrow_id), expected)
        if expected is None:
            escrow.exp = self.clock.now + escrow.ttl
            assert renewed.expire_time == escrow.exp

    @rule(user=users)
    def report_failure(self, user: str) -> None:
        assert self.run(self.eco.report_task_failure(user)).streak == 0
        self.streak[user] = 0

    # Time and upkeep ------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1.0, 4.0, 5.0, 10.0, 20.0]))
    def advance_and_maintain(self, seconds: float) -> None:
        self.clock.advance(seconds)
        now = self.clock.now
        done = self.run(self.eco.maintain())
        expired = 0
        for escrow in self.escrows.values():
            if escrow.state is EscrowState.OPEN and escrow.exp <= now:
                self.credit[escrow.payer] += escrow.held
                self.escrowed[escrow.payer] -= escrow.held
                escrow.held = 0
                escrow.state = EscrowState.EXPIRED
                expired += 1
        due = [e for e in self.entries if e[2] <= now]
        self.entries = [e for e in self.entries if e[2] > now]
        for user, amount, _ in due:
            self.unbonding[user] -= amount
            self.gov[user] += amount
        closing = [p for p in self.proposals.values() if not p.closed and p.end <= now]
        for p in closing:
            p.closed = True
        assert (done.expired, done.unbonded, done.closed) == (expired, len(due), len(closing))

    @rule(amount=st.integers(1, 400), rid=st.booleans())
    def distribute(self, amount: int, rid: bool) -> None:
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.distribute_rewards(amount, request_id=request_id)

        weights = [(u, self.staked[u] * self.multiplier(u)) for u in USERS]
        shares = pro_rata(amount, weights)
        if not shares:
            assert self.run(call()).transaction is None
            return
        ok = self.pool >= amount
        done = self.attempt(call, None if ok else InsufficientFunds)
        if not ok:
            return
        assert done.recipients == len(shares)
        self.pool -= amount
        for user, share in shares:
            self.credit[user] += share
        self.retried(call, done, request_id, later=True)

    # Governance ---------------------------------------------------------------------

    @rule(user=users, rid=st.booleans())
    def propose(self, user: str, rid: bool) -> None:
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.create_proposal(user, "p", request_id=request_id)

        ok = self.staked[user] > 0
        proposal = self.attempt(call, None if ok else StakeRequired)
        if ok:
            self.proposals[proposal.proposal_id] = ProposalModel(self.clock.now + VOTING_S)
            self.retried(call, proposal, request_id, later=True)

    @precondition(lambda self: self.proposals)
    @rule(data=st.data(), user=users, choice=st.sampled_from(list(VoteChoice)), rid=st.booleans())
    def vote(self, data: st.DataObject, user: str, choice: VoteChoice, rid: bool) -> None:
        proposal_id = data.draw(st.sampled_from(sorted(self.proposals)))
        proposal = self.proposals[proposal_id]
        request_id = self.request_id(rid)

        def call() -> Awaitable[Any]:
            return self.eco.cast_vote(proposal_id, user, choice, request_id=request_id)

        if proposal.closed or self.clock.now >= proposal.end:
            expected: type[MeshError] | None = ProposalClosed
        elif self.staked[user] <= 0:
            expected = StakeRequired
        else:
            expected = None
        tally = self.attempt(call, expected)
        if expected is None:
            proposal.votes[user] = self.staked[user]
            self.retried(call, tally, request_id, later=True)

    @precondition(lambda self: self.proposals)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        proposal_id = data.draw(st.sampled_from(sorted(self.proposals)))
        self.run(self.eco.close_proposal(proposal_id))  # the mesh itself may close early
        self.proposals[proposal_id].closed = True

    @precondition(lambda self: self.retryable)
    @rule(data=st.data())
    def retry_later(self, data: st.DataObject) -> None:
        call, first = data.draw(st.sampled_from(self.retryable))
        assert self.run(call()) == first

    # What must hold after every step -----------------------------------------------

    @invariant()
    def the_ledger_balances(self) -> None:
        report = self.run(self.eco.audit())
        assert report.ok, report
        assert report.negative == ()
        for supply in report.supplies:
            assert supply.issued == supply.held == self.minted[supply.asset], supply

    @invariant()
    def the_accounts_match_the_model(self) -> None:
        async def views() -> list[Any]:
            ids = [*USERS, "system:rewards", "system:treasury"]
            return [await self.eco.get_account(i) for i in ids]

        *accounts, pool, treasury = self.run(views())
        for account in accounts:
            u = account.account_id
            assert (
                account.balance,
                account.gov_balance,
                account.staked,
                account.escrowed,
                account.unbonding,
                account.streak,
            ) == (
                self.credit[u],
                self.gov[u],
                self.staked[u],
                self.escrowed[u],
                self.unbonding[u],
                self.streak[u],
            ), u
        assert (pool.balance, treasury.balance) == (self.pool, self.treasury)


def run_machine(backend: str, redis_url: str, examples: int, steps: int) -> None:
    machine = type(
        f"LedgerMachine_{backend}", (LedgerMachine,), {"backend": backend, "redis_url": redis_url}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_the_memory_ledger_against_the_model() -> None:
    run_machine("memory", "", examples=250, steps=40)


def test_the_redis_ledger_against_the_model(redis_url: str) -> None:
    run_machine("redis", redis_url, examples=60, steps=40)
