"""``Economy``: the domain API the servicer (and in-process callers) use.

Every rule of the economy is written once, in Python, whatever the backend:
each operation plans one atomic kernel step (``meshwright.economy._ledger``
says how). The operations live in one mixin per area; this module joins them
and adds rewards distribution, the audit and the economy's own upkeep.

It knows nothing of gRPC or protobuf.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from meshwright.economy import _checks, _records
from meshwright.economy._accounts import AccountOps
from meshwright.economy._escrows import EscrowOps
from meshwright.economy._ledger import (
    SWEEP_BATCH,
    _raise_if,
    _version,
    log,
)
from meshwright.economy._records import (
    ACCOUNTS,
    OPEN_ESCROWS,
    OPEN_PROPOSALS,
    REWARDS,
    STAKERS,
    UNBONDING,
    acct,
    num,
)
from meshwright.economy._staking import StakingOps
from meshwright.economy._voting import VotingOps
from meshwright.economy.errors import (
    LedgerContended,
    VotingOpen,
)
from meshwright.economy.ids import new_id
from meshwright.economy.kernel import (
    ASSETS,
    ISSUANCE,
    Absent,
    Check,
    FieldIs,
    Idem,
    Move,
    Plan,
    Put,
)
from meshwright.economy.model import (
    Asset,
    AssetSupply,
    AuditReport,
    BalanceMismatch,
    Distributed,
    EscrowState,
    Maintenance,
    TransactionKind,
)
from meshwright.economy.params import Params
from meshwright.economy.rewards import pro_rata


class Economy(AccountOps, StakingOps, EscrowOps, VotingOps):
    """Accounts, transfers, stakes, escrows, rewards and governance over a ledger kernel."""

    # Rewards -------------------------------------------------------------

    async def distribute_rewards(
        self, amount: int, *, memo: str = "", request_id: str = ""
    ) -> Distributed:
        """Pay ``amount`` CREDIT from the rewards pool to stakers, pro rata to stake x tier
        multiplier, exact to the minor unit (largest remainders, ties by account id).

        INSUFFICIENT_FUNDS (account ``system:rewards``) if the pool holds less.
        """
        _raise_if(
            _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        return await self._distribute(
            amount,
            memo=memo,
            request_id=request_id,
            idem=self._idem(request_id, "Distribute", amount, memo),
        )

    async def _distribute(
        self,
        amount: int,
        *,
        memo: str,
        request_id: str = "",
        idem: Idem | None = None,
        period: str = "",
    ) -> Distributed:
        now = self._clock()
        tx_id = new_id("tx")
        recipients = 0

        async def build(params: Params) -> Plan | None:
            nonlocal recipients
            stakers: list[str] = []
            after = ""
            while batch := await self.store.index_page(STAKERS, after=after, limit=1000):
                stakers += batch
                after = batch[-1]
            names = [acct(_records.stake_account(s)) for s in stakers]
            marker = f"d:{period}"
            rows = await self.store.read([*names, acct(REWARDS), marker])
            pay = amount
            checks: list[Check] = [_version(params)]
            if period:  # scheduled: pay what the pool has, once per period
                if rows[marker]:
                    return None  # made by another pass or replica
                pay = min(amount, num(rows[acct(REWARDS)], Asset.CREDIT.name))
                checks += [
                    Absent(marker),
                    FieldIs(
                        acct(REWARDS), Asset.CREDIT.name, rows[acct(REWARDS)].get("CREDIT", "")
                    ),
                ]
            weights = []
            for staker, name in zip(stakers, names, strict=True):
                stake = num(rows[name], Asset.GOV.name)
                checks.append(FieldIs(name, Asset.GOV.name, rows[name].get("GOV", "")))
                weights.append((staker, stake * params.tiers.level_for(stake).multiplier_bps))
            shares = pro_rata(pay, weights)
            recipients = len(shares)
            if not shares:
                return None
            return Plan(
                checks=checks,
                moves=[Move(REWARDS, s, Asset.CREDIT.name, n) for s, n in shares],
                writes=[Put(marker, {"tx": tx_id})] if period else [],
                entry=self._entry(
                    tx_id, TransactionKind.REWARD_DISTRIBUTION, now, request_id, memo=memo
                ),
                idem=idem,
            )

        committed = await self._run(build, idem)
        if committed is None or committed.entry is None:
            return Distributed(None, 0)
        tx = _records.transaction_of(committed.entry)
        return Distributed(tx, len(tx.postings) // 2)

    # Audit and upkeep ----------------------------------------------------

    async def audit(self) -> AuditReport:
        """Replay every posting and compare with the stored balances (O(ledger))."""
        replayed: dict[tuple[str, str], int] = {}
        unbalanced: list[str] = []
        count = 0
        after = 0
        while entries := await self.store.ledger_page(after_seq=after, limit=1000):
            for entry in entries:
                count += 1
                sums: dict[str, int] = {}
                for p in entry.postings:
                    replayed[(p.account_id, p.asset)] = (
                        replayed.get((p.account_id, p.asset), 0) + p.amount
                    )
                    sums[p.asset] = sums.get(p.asset, 0) + p.amount
                if any(sums.values()):
                    unbalanced.append(entry.transaction_id)
            after = entries[-1].seq
        accounts: list[str] = []
        cursor = ""
        while batch := await self.store.index_page(ACCOUNTS, after=cursor, limit=1000):
            accounts += batch
            cursor = batch[-1]
        rows: dict[str, dict[str, str]] = {}
        for start in range(0, len(accounts), 1000):
            rows |= await self.store.read([acct(a) for a in accounts[start : start + 1000]])
        mismatches: list[BalanceMismatch] = []
        negative: list[BalanceMismatch] = []
        held = dict.fromkeys(ASSETS, 0)
        for account_id in accounts:
            row = rows[acct(account_id)]
            for asset in ASSETS:
                stored = num(row, asset)
                again = replayed.pop((account_id, asset), 0)
                if stored != again:
                    mismatches.append(BalanceMismatch(account_id, Asset[asset], stored, again))
                if account_id != ISSUANCE:
                    held[asset] += stored
                    if stored < 0:
                        negative.append(BalanceMismatch(account_id, Asset[asset], stored, again))
        for (account_id, asset), again in sorted(replayed.items()):  # postings to unknown accounts
            mismatches.append(BalanceMismatch(account_id, Asset[asset], 0, again))
        issuance = rows.get(acct(ISSUANCE), {})
        supplies = tuple(AssetSupply(Asset[a], -num(issuance, a), held[a]) for a in ASSETS)
        ok = not (mismatches or unbalanced or negative) and all(
            s.issued == s.held for s in supplies
        )
        return AuditReport(
            ok,
            count,
            len(accounts),
            supplies,
            tuple(mismatches),
            tuple(unbalanced),
            tuple(negative),
        )

    async def maintain(self) -> Maintenance:
        """One pass of the economy's own work: expire escrows that were not renewed, complete
        unbonding, close proposals past their window (applying passed changes) and make a
        scheduled reward distribution. Safe on every replica at once."""
        now = self._clock()
        expired = unbonded = closed = distributed = 0
        for escrow_id in await self.store.index_due(OPEN_ESCROWS, max_score=now, limit=SWEEP_BATCH):
            _, settled = await self._settle(escrow_id, EscrowState.EXPIRED)
            expired += settled
        for entry_id in await self.store.index_due(UNBONDING, max_score=now, limit=SWEEP_BATCH):
            unbonded += await self._complete_unbonding(entry_id)
        for proposal_id in await self.store.index_due(
            OPEN_PROPOSALS, max_score=now, limit=SWEEP_BATCH
        ):
            with contextlib.suppress(VotingOpen):
                await self.close_proposal(proposal_id)
                closed += 1
        params = await self.parameters()
        if params.distribution_amount > 0 and params.distribution_interval_s > 0:
            # One distribution per period whichever replica gets there first: the
            # period's marker is written with it.
            interval = params.distribution_interval_s
            period = repr(math.floor(now / interval) * interval)
            with contextlib.suppress(LedgerContended):
                done = await self._distribute(
                    params.distribution_amount,
                    memo=f"scheduled distribution of the period from {period}",
                    period=period,
                )
                distributed += done.recipients > 0
        return Maintenance(expired, unbonded, closed, distributed)

    def start(self) -> None:
        """Run ``maintain`` every ``maintenance_interval_s`` until ``stop``."""
        if self._maintainer is None:
            self._stopping = False
            self._maintainer = asyncio.get_running_loop().create_task(
                self._maintain_forever(), name="economy-maintenance"
            )

    async def stop(self) -> None:
        """Stop the maintenance loop (an unfinished pass is cancelled; every step is atomic)."""
        task, self._maintainer = self._maintainer, None
        if task is None:
            return
        # The flag ends the loop even if a cancel is lost: redis-py on Python 3.11 can
        # swallow one that lands as a reply arrives (asyncio.wait_for's race), and the
        # loop would otherwise go on, with this stop waiting for it forever.
        self._stopping = True
        task.cancel()
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            if not task.done():
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _maintain_forever(self) -> None:
        while not self._stopping:
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("economy maintenance pass failed; retrying")
            await asyncio.sleep(self.maintenance_interval_s)
