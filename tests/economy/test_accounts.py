"""Accounts, the two assets, minting, transfers and their fee, listings: the domain on both
ledger backends (and a few shapes over the wire)."""

from __future__ import annotations

import pytest

from meshwright.economy import (
    AccountKind,
    Asset,
    Economy,
    InsufficientFunds,
    MintLimitExceeded,
    Params,
    TransactionKind,
)
from meshwright.economy.model import INT64_MAX
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import AlreadyExists, InvalidArgument, NotFound
from meshwright.mesh.paging import encode_page_token
from tests.economy.conftest import Env, Ledger, as_caller, fields, open_account

pytestmark = pytest.mark.timeout(60)

RESERVED = ("system:", "escrow:", "stake:", "unbonding:")


# Creating and reading ----------------------------------------------------------


async def test_create_and_get_account(eco: Economy, ledger: Ledger) -> None:
    created = await eco.create_account(
        "alice", display_name="Alice", initial_balance=250, initial_gov_balance=40
    )
    assert (created.account_id, created.display_name, created.balance, created.gov_balance) == (
        "alice",
        "Alice",
        250,
        40,
    )
    assert (created.staked, created.escrowed, created.unbonding, created.streak) == (0, 0, 0, 0)
    assert created.kind is AccountKind.USER and created.create_time == ledger.clock.now
    assert created.owner == ""  # made outside any call
    assert await eco.get_account("alice") == created
    page = await eco.list_transactions("alice")
    [mint] = page.transactions
    assert mint.kind is TransactionKind.MINT
    # One mint transaction for both assets, each from the issuance account.
    assert [(p.account_id, p.asset, p.amount) for p in mint.postings] == [
        ("system:issuance", Asset.CREDIT, -250),
        ("alice", Asset.CREDIT, 250),
        ("system:issuance", Asset.GOV, -40),
        ("alice", Asset.GOV, 40),
    ]
    assert (mint.from_account_id, mint.to_account_id, mint.amount) == (
        "system:issuance",
        "alice",
        250,
    )


async def test_the_owner_is_the_caller_unless_named(eco: Economy) -> None:
    with as_caller("client", "alice"):
        mine = await eco.create_account("alice")
    assert mine.owner == "client:alice"
    with as_caller("admin", "ops"):
        theirs = await eco.create_account("bob", owner="agent:bob")
    assert theirs.owner == "agent:bob"
    assert await eco.owner_of("alice") == "client:alice"
    assert await eco.owner_of("ghost") is None
    assert await eco.owner_of("not an id") is None


async def test_unfunded_account_has_no_transaction(eco: Economy) -> None:
    await eco.create_account("bob")
    assert (await eco.list_transactions("bob")).transactions == []


async def test_the_ledgers_own_accounts_exist_from_the_start(eco: Economy) -> None:
    kinds = {
        "system:issuance": AccountKind.ISSUANCE,
        "system:treasury": AccountKind.TREASURY,
        "system:rewards": AccountKind.REWARDS_POOL,
    }
    for account_id, kind in kinds.items():
        account = await eco.get_account(account_id)
        assert (account.kind, account.balance, account.owner) == (kind, 0, "")


@pytest.mark.parametrize("prefix", RESERVED)
async def test_reserved_ids_cannot_be_taken(eco: Economy, prefix: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        await eco.create_account(f"{prefix}alice")
    assert fields(err.value) == ["account_id"]
    # The prefix is reserved with its colon: the bare word is an ordinary id.
    bare = prefix.rstrip(":")
    assert (await eco.create_account(bare)).kind is AccountKind.USER
    assert (await eco.create_account(f"{bare}-x:y")).kind is AccountKind.USER


async def test_create_account_validation_names_each_rule(eco: Economy) -> None:
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"account_id": ""}, ["account_id"]),
        ({"account_id": "-bad"}, ["account_id"]),
        ({"account_id": "a" * 129}, ["account_id"]),
        ({"owner": "alice"}, ["owner"]),  # not role:subject
        ({"display_name": "n" * 257}, ["display_name"]),
        ({"initial_balance": -1}, ["initial_balance"]),
        ({"initial_balance": INT64_MAX + 1}, ["initial_balance"]),
        ({"initial_gov_balance": -1}, ["initial_gov_balance"]),
        ({"initial_gov_balance": INT64_MAX + 1}, ["initial_gov_balance"]),
        ({"request_id": "r" * 257}, ["request_id"]),
    ]
    for overrides, expected in cases:
        kwargs: dict[str, object] = {"account_id": "ok"} | overrides
        account_id = str(kwargs.pop("account_id"))
        with pytest.raises(InvalidArgument) as err:
            await eco.create_account(account_id, **kwargs)  # type: ignore[arg-type]
        assert fields(err.value) == expected, overrides
    # Each bound, exactly at the limit, passes.
    made = await eco.create_account(
        "a" * 128, display_name="n" * 256, request_id="r" * 256, owner="client:x"
    )
    assert made.display_name == "n" * 256
    # All at once: every bad field named.
    with pytest.raises(InvalidArgument) as every:
        await eco.create_account("-bad id", initial_balance=-5, initial_gov_balance=-1)
    assert fields(every.value) == ["account_id", "initial_balance", "initial_gov_balance"]
    with pytest.raises(NotFound):
        await eco.get_account("ok")  # nothing was created by a refused call


async def test_a_caller_that_cannot_be_an_owner_is_refused(eco: Economy) -> None:
    with as_caller("client", ":weird"), pytest.raises(InvalidArgument) as err:
        await eco.create_account("m")
    assert fields(err.value) == ["owner"]


async def test_an_existing_account_is_left_untouched(eco: Economy) -> None:
    await eco.create_account("alice", initial_balance=10)
    with pytest.raises(AlreadyExists) as dup:
        await eco.create_account("alice", initial_balance=99)
    assert dup.value.reason == "ALREADY_EXISTS" and dup.value.metadata == {"account_id": "alice"}
    assert (await eco.get_account("alice")).balance == 10
    assert (await eco.audit()).ok


async def test_get_account_errors(eco: Economy) -> None:
    with pytest.raises(NotFound) as missing:
        await eco.get_account("nobody")
    assert missing.value.metadata == {"account_id": "nobody"}
    with pytest.raises(InvalidArgument) as bad:
        await eco.get_account("")
    assert fields(bad.value) == ["account_id"]


# Minting and the supply limit -------------------------------------------------


async def test_mint_each_asset(eco: Economy) -> None:
    await eco.create_account("alice")
    credit = await eco.mint("alice", 70, memo="grant")
    gov = await eco.mint("alice", 5, asset=Asset.GOV)
    assert (gov.account.balance, gov.account.gov_balance) == (70, 5)
    assert credit.transaction.kind is TransactionKind.MINT and credit.transaction.memo == "grant"
    assert [(p.account_id, p.asset, p.amount) for p in gov.transaction.postings] == [
        ("system:issuance", Asset.GOV, -5),
        ("alice", Asset.GOV, 5),
    ]
    assert (await eco.get_account("system:issuance")).balance == -70
    report = await eco.audit()
    assert report.ok
    assert {s.asset: (s.issued, s.held) for s in report.supplies} == {
        Asset.CREDIT: (70, 70),
        Asset.GOV: (5, 5),
    }


async def test_mint_into_the_pools_but_no_other_ledger_account(eco: Economy) -> None:
    await eco.mint("system:rewards", 100)
    await eco.mint("system:treasury", 7)
    assert (await eco.get_account("system:rewards")).balance == 100
    assert (await eco.get_account("system:treasury")).balance == 7
    for account_id in ("system:issuance", "stake:alice", "escrow:e1", "unbonding:a", "system:x"):
        with pytest.raises(InvalidArgument) as err:
            await eco.mint(account_id, 1)
        assert fields(err.value) == ["account_id"], account_id


async def test_mint_validation_and_errors(eco: Economy) -> None:
    await eco.create_account("alice")
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"amount": 0}, ["amount"]),
        ({"amount": -1}, ["amount"]),
        ({"amount": INT64_MAX + 1}, ["amount"]),
        ({"asset": 3}, ["asset"]),
        ({"memo": "m" * 1025}, ["memo"]),
        ({"request_id": "r" * 257}, ["request_id"]),
    ]
    for overrides, expected in cases:
        kwargs: dict[str, object] = {"amount": 1} | overrides
        amount = int(kwargs.pop("amount"))  # type: ignore[call-overload]
        with pytest.raises(InvalidArgument) as err:
            await eco.mint("alice", amount, **kwargs)  # type: ignore[arg-type]
        assert fields(err.value) == expected, overrides
    await eco.mint("alice", 1, memo="m" * 1024, asset=0)  # unspecified is CREDIT
    assert (await eco.get_account("alice")).balance == 1
    with pytest.raises(NotFound) as missing:
        await eco.mint("ghost", 1)
    assert missing.value.metadata == {"account_id": "ghost"}


@pytest.mark.parametrize("asset", [Asset.CREDIT, Asset.GOV])
async def test_the_supply_of_each_asset_is_capped_at_int64(eco: Economy, asset: Asset) -> None:
    other = Asset.GOV if asset is Asset.CREDIT else Asset.CREDIT
    field = "initial_balance" if asset is Asset.CREDIT else "initial_gov_balance"
    await eco.create_account("whale", **{field: INT64_MAX - 1})  # type: ignore[arg-type]
    await eco.mint("whale", 1, asset=asset)  # exactly int64
    with pytest.raises(MintLimitExceeded) as err:
        await eco.mint("whale", 1, asset=asset)
    assert err.value.reason == "MINT_LIMIT_EXCEEDED"
    with pytest.raises(MintLimitExceeded):
        await eco.create_account("minnow", **{field: 1})  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await eco.get_account("minnow")
    # The other asset has its own limit.
    await eco.mint("whale", INT64_MAX, asset=other)
    with pytest.raises(MintLimitExceeded):
        await eco.mint("whale", 1, asset=other)
    whale = await eco.get_account("whale")
    assert (whale.balance, whale.gov_balance) == (INT64_MAX, INT64_MAX)
    report = await eco.audit()
    assert report.ok and all(s.issued == INT64_MAX for s in report.supplies)


# Transfers -------------------------------------------------------------------


async def test_transfer_moves_money_and_records_one_entry(eco: Economy) -> None:
    await eco.create_account("alice", initial_balance=100)
    await eco.create_account("bob", initial_balance=5)
    done = await eco.transfer("alice", "bob", 30, memo="lunch")
    assert (done.from_account.balance, done.to_account.balance) == (70, 35)
    tx = done.transaction
    assert (tx.kind, tx.from_account_id, tx.to_account_id, tx.amount, tx.memo, tx.asset) == (
        TransactionKind.TRANSFER,
        "alice",
        "bob",
        30,
        "lunch",
        Asset.CREDIT,
    )
    assert tx.transaction_id.startswith("tx_") and tx.caller == "internal"
    for who in ("alice", "bob"):
        assert (await eco.list_transactions(who)).transactions[0] == tx  # newest first


async def test_gov_moves_apart_from_credit(eco: Economy) -> None:
    await open_account(eco, "alice", 1_000, gov=10)
    await eco.create_account("bob")
    with pytest.raises(InsufficientFunds):
        await eco.transfer("alice", "bob", 11, asset=Asset.GOV)  # plenty of CREDIT, not GOV
    done = await eco.transfer("alice", "bob", 10, asset=Asset.GOV)
    assert done.transaction.asset is Asset.GOV
    assert (done.from_account.gov_balance, done.from_account.balance) == (0, 1_000)
    assert (done.to_account.gov_balance, done.to_account.balance) == (10, 0)
    with pytest.raises(InvalidArgument) as bad:
        await eco.transfer("alice", "bob", 1, asset=7)
    assert fields(bad.value) == ["asset"]


async def test_transfer_validation_names_each_rule(eco: Economy) -> None:
    await eco.create_account("alice", initial_balance=100)
    await eco.create_account("bob")
    cases: list[tuple[tuple[str, str, int], dict[str, object], list[str]]] = [
        (("", "bob", 1), {}, ["from_account_id"]),
        (("alice", "b c", 1), {}, ["to_account_id"]),
        (("alice", "alice", 1), {}, ["to_account_id"]),
        (("alice", "bob", 0), {}, ["amount"]),
        (("alice", "bob", -1), {}, ["amount"]),
        (("alice", "bob", INT64_MAX + 1), {}, ["amount"]),
        (("alice", "bob", 1), {"memo": "x" * 1025}, ["memo"]),
        (("alice", "bob", 1), {"request_id": "r" * 257}, ["request_id"]),
        (("system:rewards", "bob", 1), {}, ["from_account_id"]),
        (("alice", "system:treasury", 1), {}, ["to_account_id"]),
        (("alice", "stake:bob", 1), {}, ["to_account_id"]),
    ]
    for args, kwargs, expected in cases:
        with pytest.raises(InvalidArgument) as err:
            await eco.transfer(*args, **kwargs)  # type: ignore[arg-type]
        assert fields(err.value) == expected, args
    with pytest.raises(InvalidArgument) as every:
        await eco.transfer("", "b c", 0, memo="x" * 2000)
    assert fields(every.value) == ["from_account_id", "to_account_id", "amount", "memo"]
    with pytest.raises(NotFound) as no_to:
        await eco.transfer("alice", "carol", 1)
    assert no_to.value.metadata == {"account_id": "carol"}
    with pytest.raises(NotFound) as no_from:
        await eco.transfer("carol", "alice", 1)
    assert no_from.value.metadata == {"account_id": "carol"}
    assert ((await eco.get_account("alice")).balance, (await eco.get_account("bob")).balance) == (
        100,
        0,
    )


async def test_transfer_of_exactly_the_balance_and_one_more(eco: Economy) -> None:
    await eco.create_account("alice", initial_balance=100)
    await eco.create_account("bob")
    with pytest.raises(InsufficientFunds) as broke:
        await eco.transfer("alice", "bob", 101)
    assert broke.value.reason == "INSUFFICIENT_FUNDS"
    assert broke.value.metadata == {"account_id": "alice"}
    assert (await eco.transfer("alice", "bob", 100)).from_account.balance == 0
    assert (await eco.audit()).ok


async def test_anyone_may_pay_into_the_rewards_pool(eco: Economy) -> None:
    await eco.create_account("alice", initial_balance=100)
    await eco.transfer("alice", "system:rewards", 40)
    assert (await eco.get_account("system:rewards")).balance == 40


@pytest.mark.parametrize(
    ("fee_bps", "amount", "fee"),
    [(250, 399, 9), (250, 400, 10), (1, 9_999, 0), (0, 1_000, 0), (10_000, 7, 7)],
)
async def test_the_transfer_fee_is_paid_on_top_and_rounded_down(
    ledger: Ledger, fee_bps: int, amount: int, fee: int
) -> None:
    eco = ledger.economy(params=Params(transfer_fee_bps=fee_bps))
    await eco.create_account("alice", initial_balance=amount + fee)
    await eco.create_account("bob")
    if fee:
        # One unit short of amount + fee: refused, nothing moves.
        await eco.create_account("poor", initial_balance=amount + fee - 1)
        with pytest.raises(InsufficientFunds):
            await eco.transfer("poor", "bob", amount)
        assert (await eco.get_account("poor")).balance == amount + fee - 1
    done = await eco.transfer("alice", "bob", amount)
    assert (done.from_account.balance, done.to_account.balance) == (0, amount)
    assert (await eco.get_account("system:treasury")).balance == fee
    expected = [("alice", -amount), ("bob", amount)]
    if fee:  # no zero posting for a fee that rounds to nothing
        expected += [("alice", -fee), ("system:treasury", fee)]
    assert [(p.account_id, p.amount) for p in done.transaction.postings] == expected
    assert done.transaction.amount == amount
    assert (await eco.audit()).ok


async def test_gov_transfers_pay_no_fee(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(transfer_fee_bps=5_000))
    await open_account(eco, "alice", gov=100)
    await eco.create_account("bob")
    done = await eco.transfer("alice", "bob", 100, asset=Asset.GOV)
    assert done.from_account.gov_balance == 0 and len(done.transaction.postings) == 2
    assert (await eco.get_account("system:treasury")).gov_balance == 0


# Listings ------------------------------------------------------------------------


async def test_list_transactions_pages_newest_first(eco: Economy) -> None:
    await eco.create_account("alice", initial_balance=1000)
    await eco.create_account("bob")
    for i in range(1, 8):
        await eco.transfer("alice", "bob", i)
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await eco.list_transactions("alice", page_size=3, page_token=token)
        pages += 1
        seen.extend(tx.amount for tx in page.transactions)
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [7, 6, 5, 4, 3, 2, 1, 1000]  # the mint is oldest
    # page_size exactly the count: one page, no token; one less: a token to one more.
    exact = await eco.list_transactions("alice", page_size=8)
    assert len(exact.transactions) == 8 and exact.next_page_token == ""
    short = await eco.list_transactions("alice", page_size=7)
    assert len(short.transactions) == 7 and short.next_page_token
    rest = await eco.list_transactions("alice", page_size=7, page_token=short.next_page_token)
    assert [t.amount for t in rest.transactions] == [1000] and rest.next_page_token == ""
    # The default page size is 100, and page_size is capped at 1000.
    assert len((await eco.list_transactions("alice", page_size=5000)).transactions) == 8


async def test_list_transactions_filters_by_asset_and_kind(eco: Economy) -> None:
    await open_account(eco, "alice", 100, gov=50)
    await eco.create_account("bob")
    await eco.transfer("alice", "bob", 1)
    await eco.transfer("alice", "bob", 2, asset=Asset.GOV)
    await eco.stake("alice", 3)
    gov = await eco.list_transactions("alice", asset=Asset.GOV)
    assert [t.kind for t in gov.transactions] == [
        TransactionKind.STAKE,
        TransactionKind.TRANSFER,
        TransactionKind.MINT,  # the mint posted both assets
    ]
    transfers = await eco.list_transactions("alice", kind=TransactionKind.TRANSFER)
    assert [t.amount for t in transfers.transactions] == [2, 1]
    both = await eco.list_transactions("alice", asset=Asset.CREDIT, kind=TransactionKind.TRANSFER)
    assert [t.amount for t in both.transactions] == [1]
    none = await eco.list_transactions("alice", kind=TransactionKind.ESCROW_OPEN)
    assert none.transactions == []
    # A filtered page still pages: one per page, then no token.
    first = await eco.list_transactions("alice", kind=TransactionKind.TRANSFER, page_size=1)
    assert [t.amount for t in first.transactions] == [2] and first.next_page_token
    second = await eco.list_transactions(
        "alice", kind=TransactionKind.TRANSFER, page_size=1, page_token=first.next_page_token
    )
    assert [t.amount for t in second.transactions] == [1]
    third = await eco.list_transactions(
        "alice", kind=TransactionKind.TRANSFER, page_size=1, page_token=second.next_page_token
    )
    assert third.transactions == [] and third.next_page_token == ""


async def test_list_transactions_errors(eco: Economy) -> None:
    with pytest.raises(NotFound):
        await eco.list_transactions("nobody")
    with pytest.raises(InvalidArgument) as bad:
        await eco.list_transactions("", page_size=-1, page_token="garbage!")
    assert fields(bad.value) == ["account_id", "page_size", "page_token"]
    await eco.create_account("alice")
    with pytest.raises(InvalidArgument) as foreign:
        await eco.list_transactions("alice", page_token=encode_page_token("abc"))
    assert fields(foreign.value) == ["page_token"]
    with pytest.raises(InvalidArgument) as bad_asset:
        await eco.list_transactions("alice", asset=9)
    assert fields(bad_asset.value) == ["asset"]


async def test_list_transactions_refuses_an_unknown_kind(eco: Economy) -> None:
    """The contract's enums are open: a client can send kind 99 (INVALID_ARGUMENT, not a
    ValueError that becomes INTERNAL)."""
    await eco.create_account("alice")
    with pytest.raises(InvalidArgument) as bad_kind:
        await eco.list_transactions("alice", kind=99)
    assert fields(bad_kind.value) == ["kind"]


async def test_list_accounts_pages_and_filters(eco: Economy) -> None:
    for i in range(5):
        await open_account(eco, f"u{i}", 10, stake=1 if i < 2 else 0)
    users = await eco.list_accounts(kind=AccountKind.USER)
    assert [a.account_id for a in users.items] == ["u0", "u1", "u2", "u3", "u4"]
    everything = await eco.list_accounts()
    ids = [a.account_id for a in everything.items]
    assert ids == sorted(ids)
    assert {"system:issuance", "system:rewards", "system:treasury", "stake:u0"} <= set(ids)
    stakes = await eco.list_accounts(kind=AccountKind.STAKE)
    assert [a.account_id for a in stakes.items] == ["stake:u0", "stake:u1"]
    exact = await eco.list_accounts(kind=AccountKind.USER, page_size=5)
    assert len(exact.items) == 5  # a filtered listing may still hand a token; it leads nowhere
    total = len(ids)
    whole = await eco.list_accounts(page_size=total)
    assert len(whole.items) == total and whole.next_page_token == ""
    short = await eco.list_accounts(page_size=total - 1)
    assert len(short.items) == total - 1 and short.next_page_token
    rest = await eco.list_accounts(page_size=total - 1, page_token=short.next_page_token)
    assert [a.account_id for a in rest.items] == ids[-1:] and rest.next_page_token == ""


async def test_list_accounts_shows_a_caller_only_its_own(eco: Economy) -> None:
    with as_caller("client", "alice"):
        await eco.create_account("alice-1")
        await eco.create_account("alice-2")
    with as_caller("agent", "bot"):
        await eco.create_account("bot-1")
    with as_caller("client", "alice"):
        mine = await eco.list_accounts()
    assert [a.account_id for a in mine.items] == ["alice-1", "alice-2"]
    with as_caller("agent", "bot"):
        assert [a.account_id for a in (await eco.list_accounts()).items] == ["bot-1"]
    with as_caller("client", "nobody"):
        assert (await eco.list_accounts()).items == []
    for role in ("admin", "service"):
        with as_caller(role, "ops"):
            every = {a.account_id for a in (await eco.list_accounts()).items}
            assert {"alice-1", "alice-2", "bot-1", "system:issuance"} <= every
            owned = await eco.list_accounts(owner="agent:bot")
            assert [a.account_id for a in owned.items] == ["bot-1"]


async def test_list_accounts_validation(eco: Economy) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await eco.list_accounts(owner="alice", kind=99, page_size=-1, page_token="!")
    assert fields(bad.value) == ["owner", "kind", "page_size", "page_token"]


# Over the wire ----------------------------------------------------------------------


async def test_accounts_over_the_wire(env: Env) -> None:
    reply = await env.remote.call(
        "CreateAccount",
        pb.CreateAccountRequest(
            account_id="alice", display_name="Alice", initial_balance=250, initial_gov_balance=9
        ),
    )
    acct = reply.account
    assert (acct.account_id, acct.display_name, acct.balance, acct.gov_balance, acct.staked) == (
        "alice",
        "Alice",
        250,
        9,
        0,
    )
    assert acct.kind == pb.ACCOUNT_KIND_USER and acct.owner == "admin:anonymous"
    assert acct.tier == pb.STAKE_TIER_NONE and acct.reward_multiplier_bps == 10_000
    assert acct.create_time.seconds == int(env.clock.now)
    assert await env.get("alice") == acct
    minted = await env.remote.call(
        "Mint", pb.MintRequest(account_id="alice", asset=pb.ASSET_GOV, amount=1)
    )
    assert minted.account.gov_balance == 10
    assert [(p.account_id, p.asset, p.amount) for p in minted.transaction.postings] == [
        ("system:issuance", pb.ASSET_GOV, -1),
        ("alice", pb.ASSET_GOV, 1),
    ]
    listed = await env.remote.call(
        "ListAccounts", pb.ListAccountsRequest(kind=pb.ACCOUNT_KIND_USER)
    )
    assert [a.account_id for a in listed.accounts] == ["alice"]
    page = await env.remote.call(
        "ListTransactions",
        pb.ListTransactionsRequest(account_id="alice", asset=pb.ASSET_GOV),
    )
    assert [t.kind for t in page.transactions] == [
        pb.TRANSACTION_KIND_MINT,
        pb.TRANSACTION_KIND_MINT,
    ]
    with pytest.raises(MintLimitExceeded):
        await env.remote.call(
            "Mint", pb.MintRequest(account_id="alice", asset=pb.ASSET_CREDIT, amount=INT64_MAX)
        )
