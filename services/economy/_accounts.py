"""Accounts: open, read, list, mint, transfer, and their ledger history."""

from __future__ import annotations

from meshwright.economy import _checks, _records
from meshwright.economy._ledger import (
    SCAN_LIMIT,
    _asset,
    _Ledger,
    _listing_owner,
    _new_account,
    _page_after,
    _page_limit,
    _raise_if,
    _user_id,
    _version,
)
from meshwright.economy._records import (
    ACCOUNTS,
    REWARDS,
    TREASURY,
    acct,
)
from meshwright.economy.ids import new_id
from meshwright.economy.kernel import (
    ISSUANCE,
    Absent,
    Check,
    Move,
    Plan,
)
from meshwright.economy.model import (
    Account,
    AccountKind,
    Asset,
    Minted,
    Page,
    Transaction,
    TransactionKind,
    TransactionPage,
    Transferred,
)
from meshwright.economy.params import Params
from meshwright.economy.tiers import BPS_ONE
from meshwright.mesh import paging
from meshwright.mesh.context import caller
from meshwright.mesh.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from meshwright.mesh.validation import check_id, check_principal


class AccountOps(_Ledger):
    """Accounts: open, read, list, mint, transfer, and their ledger history."""

    # Accounts ------------------------------------------------------------

    async def create_account(
        self,
        account_id: str,
        *,
        display_name: str = "",
        initial_balance: int = 0,
        initial_gov_balance: int = 0,
        request_id: str = "",
        owner: str = "",
    ) -> Account:
        """Open an account, minting ``initial_balance`` CREDIT and ``initial_gov_balance`` GOV.

        It belongs to ``owner`` when given (policy lets only admins and mesh
        services name someone else), else to the caller.
        """
        violations = check_principal(owner, "owner")
        if not owner:
            who = caller()
            owner = "" if who is None else who.name
            if check_principal(owner, "owner"):
                # The verifier takes any 1-128 character subject; an owner must be a
                # clean "role:subject" (no whitespace) to be compared and shown safely.
                violations = [
                    FieldViolation(
                        "owner",
                        f"the caller {owner!r} cannot own an account: an owner is "
                        "'role:subject' with no whitespace, the subject not starting with ':'",
                    )
                ]
        _raise_if(
            _user_id(account_id, "account_id")
            + violations
            + _checks.text(display_name, "display_name", _checks.MAX_NAME)
            + _checks.non_negative(initial_balance, "initial_balance")
            + _checks.non_negative(initial_gov_balance, "initial_gov_balance")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        mints = [(Asset.CREDIT, initial_balance), (Asset.GOV, initial_gov_balance)]
        idem = self._idem(
            request_id, "CreateAccount", account_id, display_name, initial_balance,
            initial_gov_balance, owner,
        )  # fmt: skip

        async def build(params: Params) -> Plan:
            checks: list[Check] = [Absent(acct(account_id), "ALREADY_EXISTS")]
            checks += await self._supply_checks([(a, n) for a, n in mints if n > 0])
            moves = [Move(ISSUANCE, account_id, a.name, n) for a, n in mints if n > 0]
            return Plan(
                checks=checks,
                moves=moves,
                writes=_new_account(account_id, AccountKind.USER, owner, display_name, now),
                entry=self._entry(tx_id, TransactionKind.MINT, now, request_id) if moves else None,
                idem=idem,
                read_back=_records.user_records(account_id),
            )

        committed = await self._run(build, idem)
        assert committed is not None
        return await self._after(committed, account_id)

    async def owner_of(self, account_id: str) -> str | None:
        """The owner of an account, None if there is none by that id (policy lookups)."""
        if check_id(account_id, "account_id"):
            return None
        row = (await self.store.read([acct(account_id)]))[acct(account_id)]
        return row.get("owner", "") if row else None

    async def get_account(self, account_id: str) -> Account:
        """The account (a client's or agent's, or one of the ledger's own). NOT_FOUND if unknown."""
        _raise_if(check_id(account_id, "account_id"))
        account = (await self._accounts([account_id]))[account_id]
        if account is None:
            raise NotFound(f"account {account_id!r} not found", metadata={"account_id": account_id})
        return account

    async def list_accounts(
        self,
        *,
        owner: str = "",
        kind: AccountKind | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Account]:
        """Accounts by id, optionally of one owner and kind.

        Callers other than admins and mesh services list only their own (an
        empty ``owner`` stands for the caller).
        """
        violations = check_principal(owner, "owner")
        if kind not in (None, 0) and kind not in AccountKind._value2member_map_:
            violations.append(FieldViolation("kind", "is not an account kind"))
        limit = _page_limit(page_size, violations)
        after = _page_after(page_token, violations)
        _raise_if(violations)
        owner = _listing_owner(owner)
        want = AccountKind(kind) if kind else None
        index = _records.owner_index(owner) if owner else ACCOUNTS

        async def load(ids: list[str]) -> list[Account]:
            found = await self._accounts(ids)
            return [a for a in found.values() if a is not None and (want is None or a.kind == want)]

        return await self._lex_page(index, after, limit, load)

    async def mint(
        self,
        account_id: str,
        amount: int,
        *,
        asset: Asset | int | None = Asset.CREDIT,
        memo: str = "",
        request_id: str = "",
    ) -> Minted:
        """Create ``amount`` of ``asset`` in an account (a user's, the rewards pool or the
        treasury). Policy lets only admins mint."""
        the_asset, violations = _asset(asset)
        if account_id not in (REWARDS, TREASURY):
            violations += _user_id(account_id, "account_id")
        _raise_if(
            violations
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        idem = self._idem(request_id, "Mint", account_id, the_asset.name, amount, memo)

        async def build(params: Params) -> Plan:
            return Plan(
                checks=await self._supply_checks([(the_asset, amount)]),
                moves=[Move(ISSUANCE, account_id, the_asset.name, amount)],
                entry=self._entry(tx_id, TransactionKind.MINT, now, request_id, memo=memo),
                idem=idem,
                read_back=_records.user_records(account_id),
            )

        committed = await self._run(build, idem)
        assert committed is not None and committed.entry is not None
        return Minted(
            await self._after(committed, account_id), _records.transaction_of(committed.entry)
        )

    async def transfer(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: int,
        *,
        asset: Asset | int | None = Asset.CREDIT,
        memo: str = "",
        request_id: str = "",
    ) -> Transferred:
        """Move ``amount`` of ``asset`` between two accounts' balances.

        The sender also pays the ``transfer_fee_bps`` parameter's fee on CREDIT
        (rounded down) to the treasury. Anyone may pay into the rewards pool.
        """
        the_asset, violations = _asset(asset)
        violations = _user_id(from_account_id, "from_account_id") + violations
        if to_account_id != REWARDS:
            violations += _user_id(to_account_id, "to_account_id")
        if from_account_id and from_account_id == to_account_id:
            violations.append(FieldViolation("to_account_id", "must differ from from_account_id"))
        _raise_if(
            violations
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        idem = self._idem(
            request_id, "Transfer", from_account_id, to_account_id, amount, memo, the_asset.name
        )

        async def build(params: Params) -> Plan:
            moves = [Move(from_account_id, to_account_id, the_asset.name, amount)]
            fee = amount * params.transfer_fee_bps // BPS_ONE if the_asset is Asset.CREDIT else 0
            if fee:
                moves.append(Move(from_account_id, TREASURY, the_asset.name, fee))
            return Plan(
                checks=[_version(params)],
                moves=moves,
                entry=self._entry(tx_id, TransactionKind.TRANSFER, now, request_id, memo=memo),
                idem=idem,
                read_back=[
                    *_records.user_records(from_account_id),
                    *_records.user_records(to_account_id),
                ],
            )

        committed = await self._run(build, idem)
        assert committed is not None and committed.entry is not None
        return Transferred(
            _records.transaction_of(committed.entry),
            await self._after(committed, from_account_id),
            await self._after(committed, to_account_id),
        )

    async def list_transactions(
        self,
        account_id: str,
        *,
        asset: Asset | int | None = None,
        kind: TransactionKind | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> TransactionPage:
        """The account's transactions, newest first, optionally of one asset and kind."""
        violations = check_id(account_id, "account_id")
        want_asset: Asset | None = None
        if asset not in (None, 0):
            want_asset, more = _asset(asset)
            violations += more
        if kind not in (None, 0) and kind not in TransactionKind._value2member_map_:
            violations.append(FieldViolation("kind", "is not a transaction kind"))
        limit = _page_limit(page_size, violations)
        before: int | None = None
        try:
            before = paging.decode_position_token(page_token)
        except InvalidArgument as err:
            violations.extend(err.violations)
        _raise_if(violations)
        want_kind = TransactionKind(kind) if kind else None
        if not (await self.store.read([acct(account_id)]))[acct(account_id)]:
            raise NotFound(f"account {account_id!r} not found", metadata={"account_id": account_id})
        found: list[Transaction] = []
        seen = 0
        while seen < SCAN_LIMIT:
            batch = await self.store.log_page(account_id, before_seq=before, limit=limit + 1)
            for entry in batch:
                if len(found) == limit:
                    # Another entry exists past a full page: the token resumes after the page.
                    return TransactionPage(found, paging.encode_page_token(str(found[-1].seq)))
                seen += 1
                before = entry.seq
                tx = _records.transaction_of(entry)
                if want_kind is not None and tx.kind != want_kind:
                    continue
                if want_asset is not None and all(p.asset != want_asset for p in tx.postings):
                    continue
                found.append(tx)
            if len(batch) <= limit:
                return TransactionPage(found, "")
        # Examined enough for one call: a short page, and a token that resumes the scan.
        return TransactionPage(found, paging.encode_page_token(str(before)))
