"""Accounts, transfers and the ledger, over a real server."""

from __future__ import annotations

import pytest

from meshwright.economy import InsufficientFunds, MintLimitExceeded
from meshwright.economy.model import INT64_MAX
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import AlreadyExists, InvalidArgument, NotFound
from meshwright.mesh.paging import encode_page_token
from tests.economy.conftest import Env, fields


async def test_create_and_get_account(env: Env) -> None:
    reply = await env.remote.call(
        "CreateAccount",
        pb.CreateAccountRequest(account_id="alice", display_name="Alice", initial_balance=250),
    )
    acct = reply.account
    assert (acct.account_id, acct.display_name, acct.balance, acct.staked) == (
        "alice",
        "Alice",
        250,
        0,
    )
    assert acct.tier == pb.STAKE_TIER_NONE and acct.reward_multiplier_bps == 10_000
    assert acct.create_time.seconds == int(env.clock.now)
    got = await env.get("alice")
    assert got == acct

    page = await env.remote.call("ListTransactions", pb.ListTransactionsRequest(account_id="alice"))
    [mint] = page.transactions
    assert (mint.kind, mint.from_account_id, mint.to_account_id, mint.amount) == (
        pb.TRANSACTION_KIND_MINT,
        "",
        "alice",
        250,
    )


async def test_unfunded_account_has_no_mint(env: Env) -> None:
    await env.account("bob")
    page = await env.remote.call("ListTransactions", pb.ListTransactionsRequest(account_id="bob"))
    assert list(page.transactions) == []


async def test_create_account_errors(env: Env) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call(
            "CreateAccount",
            pb.CreateAccountRequest(account_id="-bad id", initial_balance=-5),
        )
    assert bad.value.reason == "INVALID_ARGUMENT"
    assert fields(bad.value) == ["account_id", "initial_balance"]

    with pytest.raises(InvalidArgument) as empty:
        await env.remote.call("CreateAccount", pb.CreateAccountRequest())
    assert fields(empty.value) == ["account_id"]

    await env.account("alice", 10)
    with pytest.raises(AlreadyExists) as dup:
        await env.remote.call("CreateAccount", pb.CreateAccountRequest(account_id="alice"))
    assert dup.value.reason == "ALREADY_EXISTS"
    assert (await env.get("alice")).balance == 10  # untouched


async def test_money_supply_is_capped_at_int64(env: Env) -> None:
    await env.account("whale", INT64_MAX)
    with pytest.raises(MintLimitExceeded) as err:
        await env.account("minnow", 1)
    assert err.value.reason == "MINT_LIMIT_EXCEEDED"
    with pytest.raises(NotFound):
        await env.get("minnow")


async def test_get_account_errors(env: Env) -> None:
    with pytest.raises(NotFound) as missing:
        await env.remote.call("GetAccount", pb.GetAccountRequest(account_id="nobody"))
    assert missing.value.reason == "NOT_FOUND"
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call("GetAccount", pb.GetAccountRequest(account_id=""))
    assert fields(bad.value) == ["account_id"]


async def test_transfer_moves_money_and_records_one_entry(env: Env) -> None:
    await env.account("alice", 100)
    await env.account("bob", 5)
    reply = await env.remote.call(
        "Transfer",
        pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=30, memo="lunch"),
    )
    assert (reply.from_account.balance, reply.to_account.balance) == (70, 35)
    tx = reply.transaction
    assert (tx.kind, tx.from_account_id, tx.to_account_id, tx.amount, tx.memo) == (
        pb.TRANSACTION_KIND_TRANSFER,
        "alice",
        "bob",
        30,
        "lunch",
    )
    assert tx.transaction_id.startswith("tx_")
    for who in ("alice", "bob"):
        page = await env.remote.call("ListTransactions", pb.ListTransactionsRequest(account_id=who))
        assert page.transactions[0] == tx  # newest first


async def test_transfer_errors_name_every_bad_field(env: Env) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call(
            "Transfer",
            pb.TransferRequest(from_account_id="", to_account_id="b c", amount=0, memo="x" * 2000),
        )
    assert fields(bad.value) == ["from_account_id", "to_account_id", "amount", "memo"]

    await env.account("alice", 100)
    with pytest.raises(InvalidArgument) as self_transfer:
        await env.remote.call(
            "Transfer", pb.TransferRequest(from_account_id="alice", to_account_id="alice", amount=1)
        )
    assert fields(self_transfer.value) == ["to_account_id"]

    with pytest.raises(InvalidArgument) as negative:
        await env.remote.call(
            "Transfer", pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=-1)
        )
    assert fields(negative.value) == ["amount"]

    with pytest.raises(NotFound):
        await env.remote.call(
            "Transfer", pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=1)
        )
    with pytest.raises(NotFound):
        await env.remote.call(
            "Transfer", pb.TransferRequest(from_account_id="bob", to_account_id="alice", amount=1)
        )

    await env.account("bob")
    with pytest.raises(InsufficientFunds) as broke:
        await env.remote.call(
            "Transfer",
            pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=101),
        )
    assert broke.value.reason == "INSUFFICIENT_FUNDS"
    assert broke.value.metadata == {"account_id": "alice"}
    # Nothing half-applied.
    assert ((await env.get("alice")).balance, (await env.get("bob")).balance) == (100, 0)


async def test_amount_beyond_int64_is_invalid_in_the_domain(env: Env) -> None:
    # The wire cannot carry it; in-process callers can.
    await env.account("alice", 1)
    await env.account("bob")
    with pytest.raises(InvalidArgument) as err:
        await env.economy.transfer("alice", "bob", INT64_MAX + 1)
    assert fields(err.value) == ["amount"]


async def test_list_transactions_pages_newest_first(env: Env) -> None:
    await env.account("alice", 1000)
    await env.account("bob")
    for i in range(1, 8):
        await env.remote.call(
            "Transfer", pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=i)
        )
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await env.remote.call(
            "ListTransactions",
            pb.ListTransactionsRequest(account_id="alice", page_size=3, page_token=token),
        )
        pages += 1
        seen.extend(tx.amount for tx in page.transactions)
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [7, 6, 5, 4, 3, 2, 1, 1000]  # the mint is oldest

    # The default page size is 100, and page_size is capped at 1000.
    page = await env.remote.call(
        "ListTransactions", pb.ListTransactionsRequest(account_id="alice", page_size=5000)
    )
    assert len(page.transactions) == 8 and page.next_page_token == ""


async def test_list_transactions_errors(env: Env) -> None:
    with pytest.raises(NotFound):
        await env.remote.call("ListTransactions", pb.ListTransactionsRequest(account_id="nobody"))
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call(
            "ListTransactions",
            pb.ListTransactionsRequest(account_id="", page_size=-1, page_token="garbage!"),
        )
    assert fields(bad.value) == ["account_id", "page_size", "page_token"]
    await env.account("alice")
    with pytest.raises(InvalidArgument) as foreign:
        await env.remote.call(
            "ListTransactions",
            pb.ListTransactionsRequest(account_id="alice", page_token=encode_page_token("abc")),
        )
    assert fields(foreign.value) == ["page_token"]
