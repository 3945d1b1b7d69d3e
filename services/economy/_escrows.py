"""Escrows of workflow budgets: open, capture (with bonuses), release, renew, expire."""

from __future__ import annotations

from meshwright.economy import _checks, _records
from meshwright.economy._ledger import (
    _const,
    _Ledger,
    _listing_owner,
    _new_account,
    _page_after,
    _page_limit,
    _raise_if,
    _require_open,
    _ttl,
    _user_id,
    _version,
)
from meshwright.economy._records import (
    ESCROWS,
    OPEN_ESCROWS,
    REWARDS,
    acct,
    num,
)
from meshwright.economy.errors import PayeeNotOwned, TaskAlreadyPaid
from meshwright.economy.idempotency import fingerprint
from meshwright.economy.ids import new_id
from meshwright.economy.kernel import (
    NOT_FOUND,
    Absent,
    Add,
    Check,
    Exists,
    FieldIs,
    Idem,
    IndexAdd,
    IndexRemove,
    Move,
    Plan,
    Put,
    Write,
)
from meshwright.economy.model import (
    Account,
    AccountKind,
    Asset,
    Escrow,
    EscrowMoved,
    EscrowReleased,
    EscrowState,
    Page,
    TransactionKind,
)
from meshwright.economy.params import Params
from meshwright.economy.tiers import BPS_ONE
from meshwright.mesh.errors import (
    FieldViolation,
    NotFound,
)
from meshwright.mesh.validation import check_id, check_principal


class EscrowOps(_Ledger):
    """Escrows of workflow budgets: open, capture (with bonuses), release, renew, expire."""

    async def escrow_owner(self, escrow_id: str) -> str | None:
        """The owner of an escrow's payer, None if there is no escrow by that id."""
        if check_id(escrow_id, "escrow_id"):
            return None
        row = (await self.store.read([_records.escrow_rec(escrow_id)]))[
            _records.escrow_rec(escrow_id)
        ]
        return row.get("owner", "") if row else None

    # Escrow --------------------------------------------------------------

    async def open_escrow(
        self,
        payer_account_id: str,
        amount: int,
        *,
        escrow_id: str = "",
        reference: str = "",
        ttl_s: float | None = None,
        request_id: str = "",
    ) -> EscrowMoved:
        """Move ``amount`` of the payer's CREDIT into a new escrow (id generated if empty).

        The escrow stays open for ``ttl_s`` (default: the ``escrow_ttl_s``
        parameter) after its last renewal or capture; then the economy releases
        it to the payer itself.
        """
        violations = (
            check_id(escrow_id, "escrow_id", required=False)
            + _user_id(payer_account_id, "payer_account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.text(reference, "reference", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        violations += _ttl(ttl_s)
        _raise_if(violations)
        the_id = escrow_id or new_id("esc")
        now = self._clock()
        tx_id = new_id("tx")
        # The requested id, not the generated one: a retry must match.
        idem = self._idem(
            request_id, "OpenEscrow", escrow_id, payer_account_id, amount, reference, ttl_s
        )
        holder = _records.escrow_account(the_id)
        record = _records.escrow_rec(the_id)

        async def build(params: Params) -> Plan:
            ttl = params.escrow_ttl_s if ttl_s is None else ttl_s
            payer = (await self.store.read([acct(payer_account_id)]))[acct(payer_account_id)]
            owner = payer.get("owner", "")
            expires = now + ttl
            writes: list[Write] = [
                Put(
                    record,
                    {
                        "payer": payer_account_id,
                        "owner": owner,
                        "amount": str(amount),
                        "state": EscrowState.OPEN.name,
                        "ref": reference,
                        "ct": repr(now),
                        "exp": repr(expires),
                        "ttl": repr(ttl),
                    },
                ),
                *_new_account(holder, AccountKind.ESCROW, "", holder, now),
                Add(acct(payer_account_id), "escrowed", amount),
                IndexAdd(ESCROWS, the_id),
                IndexAdd(_records.escrow_owner_index(owner), the_id),
                IndexAdd(OPEN_ESCROWS, the_id, expires),
            ]
            return Plan(
                checks=[
                    _version(params),
                    Exists(acct(payer_account_id), NOT_FOUND),
                    Absent(record, "ALREADY_EXISTS"),
                ],
                moves=[Move(payer_account_id, holder, Asset.CREDIT.name, amount)],
                writes=writes,
                entry=self._entry(
                    tx_id,
                    TransactionKind.ESCROW_OPEN,
                    now,
                    request_id,
                    memo=reference,
                    escrow_id=the_id,
                ),
                idem=idem,
                read_back=[record],
            )

        committed = await self._run(build, idem)
        assert committed is not None and committed.entry is not None
        opened = committed.entry.refs.get("escrow_id", the_id)
        return EscrowMoved(
            _records.escrow_of(opened, committed.records[_records.escrow_rec(opened)]),
            _records.transaction_of(committed.entry),
        )

    async def capture_escrow(
        self,
        escrow_id: str,
        payee_account_id: str,
        amount: int,
        *,
        memo: str = "",
        task_id: str = "",
        payee_owner: str = "",
        request_id: str = "",
    ) -> EscrowMoved:
        """Pay ``amount`` out of an open escrow to the payee (the per-task hot path).

        With ``payee_owner`` the payee account must belong to that principal or
        to an admin (PAYEE_NOT_OWNED otherwise, and nothing moves): the engine names the agent
        that did the work, so an account someone opened under an agent's payout id
        before the agent did cannot collect its pay.

        With a ``task_id`` the task is paid once: a repeat with the same payee
        and amount replays the first capture, another one is TASK_ALREADY_PAID.
        On top of the price the payee gets its tier bonus (price x (multiplier -
        1)) and, once its streak of paid tasks reaches the threshold, the streak
        bonus, both from the rewards pool while it has funds, in the same
        transaction. The streak is the one read when the capture is planned
        (unguarded, so an agent's concurrent captures never conflict over it:
        two of them may both see the streak before either). A capture also
        extends the escrow's expiry by its ttl.
        """
        _raise_if(
            check_id(escrow_id, "escrow_id")
            + _user_id(payee_account_id, "payee_account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + check_id(task_id, "task_id", required=False)
            + check_principal(payee_owner, "payee_owner")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        record = _records.escrow_rec(escrow_id)
        if task_id:
            idem: Idem | None = Idem(
                f"cap:{escrow_id}:{task_id}",
                fingerprint("CaptureEscrow", payee_account_id, amount),
                self.idempotency_ttl_s,
            )
        else:
            idem = self._idem(
                request_id, "CaptureEscrow", escrow_id, payee_account_id, amount, memo
            )

        async def build(params: Params) -> Plan:
            payee_stake = acct(_records.stake_account(payee_account_id))
            rows = await self.store.read([record, acct(payee_account_id), payee_stake])
            escrow = rows[record]
            if not escrow:
                raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
            _require_open(escrow_id, escrow, now)
            payer = escrow["payer"]
            level = params.tiers.level_for(num(rows[payee_stake], Asset.GOV.name))
            bonus = amount * max(level.multiplier_bps - BPS_ONE, 0) // BPS_ONE
            streak = num(rows[acct(payee_account_id)], "streak") + 1
            if params.streak_threshold and streak >= params.streak_threshold:
                bonus += amount * params.streak_bonus_bps // BPS_ONE
            checks: list[Check] = [
                _version(params),
                FieldIs(record, "state", EscrowState.OPEN.name),
            ]
            payee = rows[acct(payee_account_id)]
            if payee_owner and payee:
                owner = payee.get("owner", "")
                # Owners never change, so the read needs no guard. Only admins and the
                # mesh's services can open an account owned by an admin.
                if owner != payee_owner and not owner.startswith("admin:"):
                    raise PayeeNotOwned(
                        f"account {payee_account_id!r} belongs to {owner or 'nobody'!r}, not to "
                        f"{payee_owner!r} that did the work",
                        metadata={"account_id": payee_account_id},
                    )
            writes: list[Write] = [
                Add(record, "captured", amount),
                Add(record, "n", 1),
                Add(acct(payer), "escrowed", -amount),
                Add(acct(payee_account_id), "streak", 1),
            ]
            ttl = float(escrow.get("ttl") or params.escrow_ttl_s)
            writes += [
                Put(record, {"exp": repr(now + ttl)}),
                IndexAdd(OPEN_ESCROWS, escrow_id, now + ttl),
            ]
            if task_id:
                marker = _records.capture_rec(escrow_id, task_id)
                checks.append(Absent(marker, "TASK_ALREADY_PAID"))
                writes.append(Put(marker, {"payee": payee_account_id, "amount": str(amount)}))
            moves = [
                Move(
                    _records.escrow_account(escrow_id),
                    payee_account_id,
                    Asset.CREDIT.name,
                    amount,
                    "ESCROW_EXHAUSTED",
                )
            ]
            if bonus:
                moves.append(Move(REWARDS, payee_account_id, Asset.CREDIT.name, bonus, cap=True))
            return Plan(
                checks=checks,
                moves=moves,
                writes=writes,
                entry=self._entry(
                    tx_id,
                    TransactionKind.ESCROW_CAPTURE,
                    now,
                    request_id,
                    memo=memo,
                    escrow_id=escrow_id,
                    task_id=task_id,
                ),
                idem=idem,
                read_back=[record],
            )

        try:
            committed = await self._run(build, idem)
        except TaskAlreadyPaid as err:
            raise await self._already_paid(escrow_id, task_id, err) from None
        assert committed is not None and committed.entry is not None
        tx = _records.transaction_of(committed.entry)
        bonus = sum(
            p.amount for p in tx.postings[2:] if p.account_id == payee_account_id and p.amount > 0
        )
        return EscrowMoved(_records.escrow_of(escrow_id, committed.records[record]), tx, bonus)

    async def _already_paid(
        self, escrow_id: str, task_id: str, err: TaskAlreadyPaid
    ) -> TaskAlreadyPaid:
        """The refusal of a second payment for a task, saying who got the first and how much."""
        marker = _records.capture_rec(escrow_id, task_id)
        first = (await self.store.read([marker]))[marker]
        if not first:
            return err
        return TaskAlreadyPaid(
            f"task {task_id!r} was paid from escrow {escrow_id!r} already: {first['amount']} "
            f"to {first['payee']!r}",
            metadata={
                "capture_id": f"{escrow_id}:{task_id}",
                "payee_account_id": first["payee"],
                "amount": first["amount"],
            },
        )

    async def release_escrow(self, escrow_id: str, *, request_id: str = "") -> EscrowReleased:
        """Refund what is left to the payer and close; a closed escrow comes back unchanged."""
        _raise_if(check_id(escrow_id, "escrow_id") + _checks.request_id(request_id))
        released, _ = await self._settle(escrow_id, EscrowState.CLOSED, request_id)
        return released

    async def _settle(
        self, escrow_id: str, state: EscrowState, request_id: str = ""
    ) -> tuple[EscrowReleased, bool]:
        """Close (released by its workflow) or expire (by the economy) an open escrow."""
        now = self._clock()
        tx_id = new_id("tx")
        record = _records.escrow_rec(escrow_id)
        holder = _records.escrow_account(escrow_id)
        kind = (
            TransactionKind.ESCROW_RELEASE
            if state is EscrowState.CLOSED
            else TransactionKind.ESCROW_EXPIRE
        )
        idem = self._idem(request_id, "ReleaseEscrow", escrow_id)

        async def build(params: Params) -> Plan | None:
            rows = await self.store.read([record, acct(holder)])
            escrow = rows[record]
            if not escrow:
                raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
            if escrow.get("state") != EscrowState.OPEN.name:
                return None
            if state is EscrowState.EXPIRED and float(escrow.get("exp") or 0) > now:
                return None  # renewed since it was found due
            held = num(rows[acct(holder)], Asset.CREDIT.name)
            payer = escrow["payer"]
            return Plan(
                checks=[
                    FieldIs(record, "state", EscrowState.OPEN.name),
                    FieldIs(record, "exp", escrow.get("exp", "")),
                    FieldIs(acct(holder), Asset.CREDIT.name, rows[acct(holder)].get("CREDIT", "")),
                ],
                moves=[Move(holder, payer, Asset.CREDIT.name, held)] if held else [],
                writes=[
                    Put(record, {"state": state.name, "closed": repr(now), "released": str(held)}),
                    Add(acct(payer), "escrowed", -held),
                    IndexRemove(OPEN_ESCROWS, escrow_id),
                ],
                entry=self._entry(
                    tx_id, kind, now, request_id, memo=escrow.get("ref", ""), escrow_id=escrow_id
                )
                if held
                else None,
                idem=idem,
                read_back=[record],
            )

        committed = await self._run(build, idem)
        if committed is None:
            row = (await self.store.read([record]))[record]
            return EscrowReleased(_records.escrow_of(escrow_id, row), None), False
        tx = None if committed.entry is None else _records.transaction_of(committed.entry)
        released = EscrowReleased(_records.escrow_of(escrow_id, committed.records[record]), tx)
        return released, not committed.replayed

    async def renew_escrow(self, escrow_id: str, *, ttl_s: float | None = None) -> Escrow:
        """Push an open escrow's expiry to now + ``ttl_s`` (default: its own ttl)."""
        _raise_if(check_id(escrow_id, "escrow_id") + _ttl(ttl_s))
        now = self._clock()
        record = _records.escrow_rec(escrow_id)

        async def build(params: Params) -> Plan:
            escrow = (await self.store.read([record]))[record]
            if not escrow:
                raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
            _require_open(escrow_id, escrow, now)
            ttl = float(escrow.get("ttl") or params.escrow_ttl_s) if ttl_s is None else ttl_s
            return Plan(
                checks=[FieldIs(record, "state", EscrowState.OPEN.name)],
                writes=[
                    Put(record, {"exp": repr(now + ttl), "ttl": repr(ttl)}),
                    IndexAdd(OPEN_ESCROWS, escrow_id, now + ttl),
                ],
                read_back=[record],
            )

        committed = await self._run(build)
        assert committed is not None
        return _records.escrow_of(escrow_id, committed.records[record])

    async def get_escrow(self, escrow_id: str) -> Escrow:
        """The escrow. NOT_FOUND if unknown."""
        _raise_if(check_id(escrow_id, "escrow_id"))
        row = (await self.store.read([_records.escrow_rec(escrow_id)]))[
            _records.escrow_rec(escrow_id)
        ]
        if not row:
            raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
        return _records.escrow_of(escrow_id, row)

    async def list_escrows(
        self,
        *,
        owner: str = "",
        state: EscrowState | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Escrow]:
        """Escrows by id, optionally of one payer owner and state (own only, as accounts)."""
        violations = check_principal(owner, "owner")
        if state not in (None, 0) and state not in EscrowState._value2member_map_:
            violations.append(FieldViolation("state", "is not an escrow state"))
        limit = _page_limit(page_size, violations)
        after = _page_after(page_token, violations)
        _raise_if(violations)
        owner = _listing_owner(owner)
        want = EscrowState(state) if state else None
        index = _records.escrow_owner_index(owner) if owner else ESCROWS

        async def load(ids: list[str]) -> list[Escrow]:
            rows = await self.store.read([_records.escrow_rec(i) for i in ids])
            found = [_records.escrow_of(i, rows[_records.escrow_rec(i)]) for i in ids]
            return [e for e in found if want is None or e.state == want]

        return await self._lex_page(index, after, limit, load)

    async def report_task_failure(
        self, payee_account_id: str, *, escrow_id: str = "", task_id: str = ""
    ) -> Account:
        """An agent failed a task: its streak of paid tasks starts again from 0."""
        _raise_if(
            _user_id(payee_account_id, "payee_account_id")
            + check_id(escrow_id, "escrow_id", required=False)
            + check_id(task_id, "task_id", required=False)
        )
        committed = await self._run(
            _const(
                Plan(
                    checks=[Exists(acct(payee_account_id), NOT_FOUND)],
                    writes=[Put(acct(payee_account_id), {"streak": "0"})],
                    read_back=_records.user_records(payee_account_id),
                )
            )
        )
        assert committed is not None
        return await self._after(committed, payee_account_id)
