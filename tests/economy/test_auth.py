"""The economy with auth ON: each attack from issue 6 is refused with its exact code and
changes nothing; the owner's own call still works.

The economy is served by a real ``MeshServer`` whose pipeline verifies ES256 tokens and
resolves account and escrow owners with ``Economy.owner_of`` and ``Economy.escrow_owner``
(what ``start_node`` wires). Every RPC has its access-policy test here. Every test runs
twice: over gRPC (raw calls, the status code as the wire carries it) and in-process through
a ``LocalServiceClient`` on the same pipeline (``meshwright up``'s path, no shortcut).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from google.protobuf import message
from grpc_status import rpc_status

from meshwright.economy import ECONOMY_SERVICE, Economy, EconomyServicer, MemoryLedgerStore
from meshwright.economy._records import (
    ACCOUNTS,
    ESCROWS,
    PARAMS,
    PROPOSALS,
    acct,
    escrow_rec,
    proposal_rec,
    vote_rec,
)
from meshwright.economy.model import Asset
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import LocalServiceClient, MeshServer
from meshwright.mesh.auth import TokenIssuer, generate_key_pair
from meshwright.mesh.errors import MeshError, from_status_proto, grpc_code
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.policy import ACCOUNT, ESCROW, Authorizer
from tests.economy.conftest import FakeClock
from tests.support_auth import test_keys

Code = grpc.StatusCode
YES, NO = pb.VOTE_CHOICE_YES, pb.VOTE_CHOICE_NO
PERIOD_S = 600.0
GOV = 1_000
"""GOV alice and bob are minted, to stake."""


class Refused(Exception):
    """A call that failed: its gRPC status code and ErrorInfo reason."""

    def __init__(self, code: grpc.StatusCode, reason: str, fields: list[str]) -> None:
        super().__init__(f"{code.name} {reason} {fields}")
        self.code = code
        self.reason = reason
        self.fields = fields


class WireCaller:
    """Raw gRPC calls with one bearer token (or none), no meshwright client in between."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None) -> None:
        self._channel = channel
        self._token = token

    async def call(self, method: str, request: message.Message) -> Any:
        info = ECONOMY_SERVICE.methods_by_name[method]
        fn = self._channel.unary_unary(
            f"/{ECONOMY_SERVICE.full_name}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=getattr(pb, info.output_type.name).FromString,
        )
        md = None if self._token is None else (("authorization", f"Bearer {self._token}"),)
        try:
            return await fn(request, metadata=md, timeout=10)
        except grpc.aio.AioRpcError as err:
            status = rpc_status.from_call(err)
            reason, fields = "", []
            if status is not None:
                rebuilt = from_status_proto(status)
                reason, fields = rebuilt.reason, [v.field for v in rebuilt.violations]
            raise Refused(err.code(), reason, fields) from None


class LocalCaller:
    """In-process calls through the same pipeline, with one bearer token (or none)."""

    def __init__(self, client: LocalServiceClient) -> None:
        self._client = client

    async def call(self, method: str, request: message.Message) -> Any:
        try:
            return await self._client.call(method, request)
        except MeshError as err:
            raise Refused(grpc_code(err), err.reason, [v.field for v in err.violations]) from None


Caller = WireCaller | LocalCaller


@dataclass
class Mesh:
    """An auth-on economy, a way to call it as anyone, and the store to compare states."""

    economy: Economy
    store: MemoryLedgerStore
    clock: FakeClock
    transport: str
    channel: grpc.aio.Channel
    servicer: EconomyServicer
    pipeline: Pipeline
    proposal_id: str = ""

    def caller(self, token: str | None) -> Caller:
        if self.transport == "grpc":
            return WireCaller(self.channel, token)
        return LocalCaller(
            LocalServiceClient(self.servicer, ECONOMY_SERVICE, self.pipeline, token=token)
        )

    def as_(self, role: str, subject: str) -> Caller:
        return self.caller(test_keys().token(role, subject))

    @property
    def anonymous(self) -> Caller:
        return self.caller(None)

    @property
    def admin(self) -> Caller:
        return self.as_("admin", "ops")

    @property
    def service(self) -> Caller:
        return self.as_("service", "mesh")

    @property
    def alice(self) -> Caller:
        return self.as_("client", "alice")

    @property
    def bob(self) -> Caller:
        return self.as_("client", "bob")

    @property
    def worker(self) -> Caller:
        return self.as_("agent", "worker-1")

    async def state(self) -> dict[str, object]:
        """Everything an attack could change: every account, escrow, proposal and vote
        record, the parameters, and the whole ledger."""
        store = self.store
        accounts = await store.index_page(ACCOUNTS, limit=10_000)
        escrows = await store.index_page(ESCROWS, limit=10_000)
        proposals = await store.index_page(PROPOSALS, limit=10_000)
        names = [PARAMS, *map(acct, accounts), *map(escrow_rec, escrows)]
        names += [proposal_rec(p) for p in proposals]
        names += [vote_rec(p, a) for p in proposals for a in accounts]
        return {
            "records": await store.read(names),
            "ledger": await store.ledger_page(after_seq=0, limit=100_000),
        }

    async def issued(self, asset: Asset = Asset.CREDIT) -> int:
        """The supply of ``asset`` minted so far."""
        report = await self.economy.audit()
        return next(s.issued for s in report.supplies if s.asset is asset)

    async def balance(self, account_id: str) -> int:
        return (await self.economy.get_account(account_id)).balance


@pytest.fixture(params=["grpc", "in-process"])
async def mesh(request: pytest.FixtureRequest) -> AsyncIterator[Mesh]:
    clock = FakeClock()
    store = MemoryLedgerStore()
    economy = Economy(store, clock=clock, default_voting_period_s=PERIOD_S)
    servicer = EconomyServicer(economy)
    authorizer = Authorizer({ACCOUNT: economy.owner_of, ESCROW: economy.escrow_owner})
    pipeline = Pipeline(verifier=test_keys().verifier(), authorizer=authorizer)
    server = MeshServer(pipeline=pipeline, port=0)
    server.add(servicer, ECONOMY_SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    env = Mesh(economy, store, clock, request.param, channel, servicer, pipeline)
    try:
        await populate(env)
        yield env
    finally:
        await channel.close()
        await server.stop(0)


async def populate(env: Mesh) -> None:
    """alice and bob (clients) with CREDIT and staked GOV, an agent's payout account, an
    escrow the workflow service opened from alice's account, and a proposal of alice's."""
    for account_id, owner, balance, gov in [
        ("alice", "client:alice", 1_000, GOV),
        ("bob", "client:bob", 1_000, GOV),
        ("worker", "agent:worker-1", 0, 0),
    ]:
        await env.admin.call(
            "CreateAccount",
            pb.CreateAccountRequest(
                account_id=account_id,
                owner=owner,
                initial_balance=balance,
                initial_gov_balance=gov,
            ),
        )
    await env.alice.call("Stake", pb.StakeRequest(account_id="alice", amount=100))
    await env.bob.call("Stake", pb.StakeRequest(account_id="bob", amount=300))
    await env.service.call(
        "OpenEscrow",
        pb.OpenEscrowRequest(
            escrow_id="esc-1", payer_account_id="alice", amount=200, reference="workflow/wf-1"
        ),
    )
    reply = await env.alice.call(
        "CreateProposal", pb.CreateProposalRequest(proposer_account_id="alice", title="t")
    )
    env.proposal_id = reply.proposal.proposal_id


async def refused(caller: Caller, method: str, request: message.Message) -> Refused:
    with pytest.raises(Refused) as err:
        await caller.call(method, request)
    return err.value


def other_key_token(role: str, subject: str) -> str:
    private, _ = generate_key_pair()
    key = serialization.load_pem_private_key(private, password=None)
    return TokenIssuer(key).issue(role, subject)


def expired_token(role: str, subject: str) -> str:
    key = serialization.load_pem_private_key(test_keys().private_pem, password=None)
    # Issued two hours ago for one hour: expired far beyond the 30 s of allowed skew.
    return TokenIssuer(key, clock=lambda: time.time() - 7_200).issue(role, subject, ttl_s=3_600)


# Minting ---------------------------------------------------------------------

MINT = pb.CreateAccountRequest(account_id="mallory", initial_balance=10**12)
MINT_GOV = pb.CreateAccountRequest(account_id="mallory", initial_gov_balance=10**12)


async def test_anonymous_and_bad_tokens_cannot_mint(mesh: Mesh) -> None:
    before = await mesh.state()
    cases = [
        (mesh.anonymous, "TOKEN_MISSING"),
        (mesh.caller("not-a-jwt"), "TOKEN_INVALID"),
        (mesh.caller(other_key_token("admin", "ops")), "TOKEN_INVALID"),  # wrong signature
        (mesh.caller(expired_token("admin", "ops")), "TOKEN_EXPIRED"),
    ]
    for caller, reason in cases:
        err = await refused(caller, "CreateAccount", MINT)
        assert (err.code, err.reason) == (Code.UNAUTHENTICATED, reason)
    assert await mesh.state() == before


@pytest.mark.parametrize(
    ("role", "subject"), [("client", "mallory"), ("agent", "mallory"), ("service", "mesh")]
)
async def test_only_admin_mints(mesh: Mesh, role: str, subject: str) -> None:
    before = await mesh.state()
    for request in (MINT, MINT_GOV):
        err = await refused(mesh.as_(role, subject), "CreateAccount", request)
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "PRIVILEGED_FIELD")
    assert await mesh.state() == before  # no account, no money
    # At the limit: one minor unit is minting too.
    one = pb.CreateAccountRequest(account_id="mallory", initial_balance=1)
    err = await refused(mesh.as_(role, subject), "CreateAccount", one)
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "PRIVILEGED_FIELD")
    # Unfunded, the same caller may open it: it is theirs.
    reply = await mesh.as_(role, subject).call(
        "CreateAccount", pb.CreateAccountRequest(account_id="mallory")
    )
    assert (reply.account.balance, reply.account.owner) == (0, f"{role}:{subject}")
    assert await mesh.issued() == 2_000  # alice's and bob's, nothing more


async def test_admin_mints(mesh: Mesh) -> None:
    minted = await mesh.issued()
    reply = await mesh.admin.call(
        "CreateAccount",
        pb.CreateAccountRequest(
            account_id="treasury", initial_balance=10**12, initial_gov_balance=7
        ),
    )
    a = reply.account
    assert (a.balance, a.gov_balance, a.owner) == (10**12, 7, "admin:ops")
    assert await mesh.issued() == minted + 10**12
    assert (await mesh.economy.audit()).ok


MINT_RPC = pb.MintRequest(account_id="alice", asset=pb.ASSET_GOV, amount=10**12)


@pytest.mark.parametrize(
    ("role", "subject"),
    [("client", "alice"), ("agent", "worker-1"), ("service", "mesh")],
)
async def test_only_admin_calls_mint(mesh: Mesh, role: str, subject: str) -> None:
    before = await mesh.state()
    err = await refused(mesh.as_(role, subject), "Mint", MINT_RPC)  # alice's own account too
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    err = await refused(mesh.anonymous, "Mint", MINT_RPC)
    assert (err.code, err.reason) == (Code.UNAUTHENTICATED, "TOKEN_MISSING")
    assert await mesh.state() == before


async def test_admin_calls_mint(mesh: Mesh) -> None:
    reply = await mesh.admin.call(
        "Mint", pb.MintRequest(account_id="alice", asset=pb.ASSET_GOV, amount=5, memo="grant")
    )
    assert reply.account.gov_balance == GOV - 100 + 5  # 100 staked in populate
    tx = reply.transaction
    assert (tx.kind, tx.from_account_id, tx.to_account_id, tx.asset, tx.caller) == (
        pb.TRANSACTION_KIND_MINT,
        "system:issuance",
        "alice",
        pb.ASSET_GOV,
        "admin:ops",
    )
    # Unspecified asset: CREDIT. The rewards pool can be funded too.
    reply = await mesh.admin.call("Mint", pb.MintRequest(account_id="system:rewards", amount=9))
    assert (reply.account.balance, reply.transaction.asset) == (9, pb.ASSET_CREDIT)
    assert (await mesh.economy.audit()).ok


async def test_only_admins_and_services_name_an_owner(mesh: Mesh) -> None:
    before = await mesh.state()
    request = pb.CreateAccountRequest(account_id="mallory", owner="client:alice")
    for caller in (mesh.bob, mesh.worker):
        err = await refused(caller, "CreateAccount", request)
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "PRIVILEGED_FIELD")
    assert await mesh.state() == before
    # The registry opens payout accounts for agents this way.
    reply = await mesh.service.call(
        "CreateAccount", pb.CreateAccountRequest(account_id="mallory", owner="agent:mallory")
    )
    assert reply.account.owner == "agent:mallory"
    got = await mesh.as_("agent", "mallory").call(
        "GetAccount", pb.GetAccountRequest(account_id="mallory")
    )
    assert got.account.owner == "agent:mallory"


@pytest.mark.parametrize(
    "owner", ["alice", "client:alice\n", "client: alice", "root:alice", "client:", "client::x"]
)
async def test_owner_must_be_a_principal_name(mesh: Mesh, owner: str) -> None:
    before = await mesh.state()
    err = await refused(
        mesh.admin, "CreateAccount", pb.CreateAccountRequest(account_id="mallory", owner=owner)
    )
    assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["owner"])
    assert await mesh.state() == before


async def test_a_caller_that_cannot_be_an_owner_opens_no_account(mesh: Mesh) -> None:
    # A subject with a space could not be recorded as an owner ("client:mal lory"): the
    # verifier refuses such a token outright, even when it is properly signed.
    import time

    import jwt
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(test_keys().private_pem, password=None)
    now = int(time.time())
    claims = {"aud": "meshwright", "sub": "mal lory", "role": "client", "exp": now + 60}
    token = jwt.encode(claims, key, algorithm="ES256")  # type: ignore[arg-type]
    err = await refused(
        mesh.caller(token), "CreateAccount", pb.CreateAccountRequest(account_id="m")
    )
    assert (err.code, err.reason) == (Code.UNAUTHENTICATED, "TOKEN_INVALID")
    assert await mesh.economy.owner_of("m") is None


# Spending ---------------------------------------------------------------------


async def test_nobody_transfers_out_of_anothers_account(mesh: Mesh) -> None:
    before = await mesh.state()
    steal = pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=500)
    for caller in (mesh.bob, mesh.worker):
        err = await refused(caller, "Transfer", steal)
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
    err = await refused(mesh.service, "Transfer", steal)  # services pay through escrows only
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    err = await refused(mesh.anonymous, "Transfer", steal)
    assert (err.code, err.reason) == (Code.UNAUTHENTICATED, "TOKEN_MISSING")
    assert await mesh.state() == before

    # alice spends her own; she is told her balance, not bob's.
    mine = await mesh.alice.call(
        "Transfer", pb.TransferRequest(from_account_id="alice", to_account_id="bob", amount=70)
    )
    assert (mine.from_account.balance, mine.from_account.owner) == (730, "client:alice")
    assert mine.to_account == pb.Account(account_id="bob")
    assert await mesh.balance("bob") == 1_070
    # An admin sees both.
    ops = await mesh.admin.call(
        "Transfer", pb.TransferRequest(from_account_id="bob", to_account_id="alice", amount=1)
    )
    assert (ops.from_account.balance, ops.to_account.balance) == (1_069, 731)
    # GOV moves the same way, under the same rule.
    err = await refused(
        mesh.bob,
        "Transfer",
        pb.TransferRequest(
            from_account_id="alice", to_account_id="bob", amount=5, asset=pb.ASSET_GOV
        ),
    )
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
    gov = await mesh.alice.call(
        "Transfer",
        pb.TransferRequest(
            from_account_id="alice", to_account_id="bob", amount=5, asset=pb.ASSET_GOV
        ),
    )
    assert gov.from_account.gov_balance == GOV - 100 - 5
    assert (await mesh.economy.audit()).ok


async def test_nobody_stakes_or_unstakes_anothers_account(mesh: Mesh) -> None:
    before = await mesh.state()
    for method, request in [
        ("Stake", pb.StakeRequest(account_id="alice", amount=10)),
        ("Unstake", pb.UnstakeRequest(account_id="alice", amount=10)),
        ("CreateProposal", pb.CreateProposalRequest(proposer_account_id="alice", title="x")),
    ]:
        for caller in (mesh.bob, mesh.worker):
            err = await refused(caller, method, request)
            assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER"), method
        err = await refused(mesh.service, method, request)
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED"), method
    assert await mesh.state() == before
    reply = await mesh.alice.call("Stake", pb.StakeRequest(account_id="alice", amount=10))
    assert reply.account.staked == 110
    reply = await mesh.alice.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=10))
    assert reply.account.staked == 100


# Reading ---------------------------------------------------------------------


async def test_nobody_reads_anothers_account(mesh: Mesh) -> None:
    before = await mesh.state()
    for method, request in [
        ("GetAccount", pb.GetAccountRequest(account_id="alice")),
        ("ListTransactions", pb.ListTransactionsRequest(account_id="alice")),
        # An unknown id is refused like a foreign one: nobody probes which ids exist.
        ("GetAccount", pb.GetAccountRequest(account_id="ghost")),
        ("ListTransactions", pb.ListTransactionsRequest(account_id="ghost")),
    ]:
        for caller in (mesh.bob, mesh.worker):
            err = await refused(caller, method, request)
            assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER"), method
        err = await refused(mesh.anonymous, method, request)
        assert err.code == Code.UNAUTHENTICATED
    assert await mesh.state() == before

    own = await mesh.alice.call("GetAccount", pb.GetAccountRequest(account_id="alice"))
    assert (own.account.balance, own.account.owner) == (800, "client:alice")
    assert (own.account.gov_balance, own.account.staked) == (GOV - 100, 100)
    ledger = await mesh.alice.call(
        "ListTransactions", pb.ListTransactionsRequest(account_id="alice")
    )
    assert [t.kind for t in ledger.transactions] == [
        pb.TRANSACTION_KIND_ESCROW_OPEN,
        pb.TRANSACTION_KIND_STAKE,
        pb.TRANSACTION_KIND_MINT,
    ]
    for caller in (mesh.admin, mesh.service):
        got = await caller.call("GetAccount", pb.GetAccountRequest(account_id="alice"))
        assert got.account == own.account
        err = await refused(caller, "GetAccount", pb.GetAccountRequest(account_id="ghost"))
        assert err.code == Code.NOT_FOUND


# Escrow ----------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob", "worker", "admin"])
async def test_only_the_workflow_service_moves_escrows(mesh: Mesh, who: str) -> None:
    caller: Caller = getattr(mesh, who)
    before = await mesh.state()
    for method, request in [
        # Capture a running workflow's budget to oneself:
        ("CaptureEscrow", pb.CaptureEscrowRequest(escrow_id="esc-1", payee_account_id="bob",
                                                  amount=200)),
        ("CaptureEscrow", pb.CaptureEscrowRequest(escrow_id="esc-1", payee_account_id="worker",
                                                  amount=1)),
        ("ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id="esc-1")),
        # Even from one's own account: escrows belong to workflows.
        ("OpenEscrow", pb.OpenEscrowRequest(escrow_id="esc-2", payer_account_id="alice",
                                            amount=10)),
        # Keep a workflow's budget locked, or wipe a rival agent's streak:
        ("RenewEscrow", pb.RenewEscrowRequest(escrow_id="esc-1")),
        ("ReportTaskFailure", pb.ReportTaskFailureRequest(payee_account_id="worker")),
    ]:  # fmt: skip
        err = await refused(caller, method, request)
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED"), method
    assert await mesh.state() == before


async def test_the_workflow_service_moves_escrows(mesh: Mesh) -> None:
    paid = await mesh.service.call(
        "CaptureEscrow",
        pb.CaptureEscrowRequest(escrow_id="esc-1", payee_account_id="worker", amount=50),
    )
    assert paid.escrow.captured == 50
    released = await mesh.service.call("ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id="esc-1"))
    assert (released.escrow.released, released.escrow.state) == (150, pb.ESCROW_STATE_CLOSED)
    opened = await mesh.service.call(
        "OpenEscrow", pb.OpenEscrowRequest(escrow_id="esc-2", payer_account_id="bob", amount=5)
    )
    assert (opened.escrow.amount, opened.escrow.owner) == (5, "client:bob")
    assert await mesh.balance("worker") == 50
    assert (await mesh.economy.audit()).ok


async def test_the_workflow_service_renews_escrows_and_reports_failures(mesh: Mesh) -> None:
    got = await mesh.service.call("GetEscrow", pb.GetEscrowRequest(escrow_id="esc-1"))
    mesh.clock.advance(60)
    renewed = await mesh.service.call("RenewEscrow", pb.RenewEscrowRequest(escrow_id="esc-1"))
    assert renewed.escrow.expire_time.seconds == got.escrow.expire_time.seconds + 60
    await mesh.service.call(
        "CaptureEscrow",
        pb.CaptureEscrowRequest(escrow_id="esc-1", payee_account_id="worker", amount=1),
    )
    assert (await mesh.economy.get_account("worker")).streak == 1
    reply = await mesh.service.call(
        "ReportTaskFailure",
        pb.ReportTaskFailureRequest(payee_account_id="worker", escrow_id="esc-1", task_id="t"),
    )
    assert (reply.account.account_id, reply.account.streak) == ("worker", 0)


# Listing and reading what one owns ----------------------------------------------


async def ids(caller: Caller, method: str, request: message.Message, field: str) -> list[str]:
    reply = await caller.call(method, request)
    key = "escrow_id" if field == "escrows" else "account_id"
    return [getattr(item, key) for item in getattr(reply, field)]


async def test_clients_and_agents_list_only_their_own_accounts(mesh: Mesh) -> None:
    listing = pb.ListAccountsRequest()
    assert await ids(mesh.alice, "ListAccounts", listing, "accounts") == ["alice"]
    assert await ids(mesh.worker, "ListAccounts", listing, "accounts") == ["worker"]
    mine = pb.ListAccountsRequest(owner="client:alice")
    assert await ids(mesh.alice, "ListAccounts", mine, "accounts") == ["alice"]
    # Naming someone else, even a kind of account, is refused, not an empty page.
    for caller, owner in [
        (mesh.bob, "client:alice"),
        (mesh.worker, "client:alice"),
        (mesh.alice, "agent:worker-1"),
        (mesh.alice, "admin:ops"),
    ]:
        err = await refused(caller, "ListAccounts", pb.ListAccountsRequest(owner=owner))
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
    err = await refused(mesh.anonymous, "ListAccounts", listing)
    assert err.code == Code.UNAUTHENTICATED
    # Admins and services see anyone's, and everything with no owner: the ledger's own too.
    for caller in (mesh.admin, mesh.service):
        assert await ids(caller, "ListAccounts", mine, "accounts") == ["alice"]
        everything = await ids(caller, "ListAccounts", listing, "accounts")
        assert {"alice", "bob", "worker", "system:issuance", "stake:alice"} <= set(everything)
        users = pb.ListAccountsRequest(kind=pb.ACCOUNT_KIND_USER)
        assert await ids(caller, "ListAccounts", users, "accounts") == ["alice", "bob", "worker"]


async def test_nobody_reads_anothers_escrow(mesh: Mesh) -> None:
    before = await mesh.state()
    for escrow_id in ("esc-1", "esc-ghost"):
        for caller in (mesh.bob, mesh.worker):
            err = await refused(caller, "GetEscrow", pb.GetEscrowRequest(escrow_id=escrow_id))
            assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
        err = await refused(mesh.anonymous, "GetEscrow", pb.GetEscrowRequest(escrow_id=escrow_id))
        assert err.code == Code.UNAUTHENTICATED
    assert await mesh.state() == before
    # alice's workflow paid it from her account: she reads it, as do admins and services.
    own = await mesh.alice.call("GetEscrow", pb.GetEscrowRequest(escrow_id="esc-1"))
    assert (own.escrow.owner, own.escrow.payer_account_id, own.escrow.amount) == (
        "client:alice",
        "alice",
        200,
    )
    for caller in (mesh.admin, mesh.service):
        got = await caller.call("GetEscrow", pb.GetEscrowRequest(escrow_id="esc-1"))
        assert got.escrow == own.escrow
        err = await refused(caller, "GetEscrow", pb.GetEscrowRequest(escrow_id="esc-ghost"))
        assert err.code == Code.NOT_FOUND


async def test_clients_list_only_their_own_escrows(mesh: Mesh) -> None:
    await mesh.service.call(
        "OpenEscrow", pb.OpenEscrowRequest(escrow_id="esc-2", payer_account_id="bob", amount=5)
    )
    listing = pb.ListEscrowsRequest()
    assert await ids(mesh.alice, "ListEscrows", listing, "escrows") == ["esc-1"]
    assert await ids(mesh.bob, "ListEscrows", listing, "escrows") == ["esc-2"]
    assert await ids(mesh.worker, "ListEscrows", listing, "escrows") == []
    err = await refused(mesh.bob, "ListEscrows", pb.ListEscrowsRequest(owner="client:alice"))
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
    err = await refused(mesh.anonymous, "ListEscrows", listing)
    assert err.code == Code.UNAUTHENTICATED
    for caller in (mesh.admin, mesh.service):
        assert await ids(caller, "ListEscrows", listing, "escrows") == ["esc-1", "esc-2"]
        bobs = pb.ListEscrowsRequest(owner="client:bob", state=pb.ESCROW_STATE_OPEN)
        assert await ids(caller, "ListEscrows", bobs, "escrows") == ["esc-2"]


# Rewards and the ledger ----------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "worker", "service"])
async def test_only_admin_distributes_rewards_and_audits(mesh: Mesh, who: str) -> None:
    await mesh.admin.call("Mint", pb.MintRequest(account_id="system:rewards", amount=1_000))
    before = await mesh.state()
    caller: Caller = getattr(mesh, who)
    for method, request in [
        ("DistributeRewards", pb.DistributeRewardsRequest(amount=400)),
        ("AuditLedger", pb.AuditLedgerRequest()),
    ]:
        err = await refused(caller, method, request)
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED"), method
        err = await refused(mesh.anonymous, method, request)
        assert (err.code, err.reason) == (Code.UNAUTHENTICATED, "TOKEN_MISSING"), method
    assert await mesh.state() == before


async def test_admin_distributes_rewards_and_audits(mesh: Mesh) -> None:
    await mesh.admin.call("Mint", pb.MintRequest(account_id="system:rewards", amount=1_000))
    done = await mesh.admin.call(
        "DistributeRewards", pb.DistributeRewardsRequest(amount=400, memo="q1")
    )
    # alice staked 100 and bob 300, both bronze (1.0x): 100 and 300.
    assert done.recipient_count == 2
    assert (done.transaction.kind, done.transaction.memo) == (
        pb.TRANSACTION_KIND_REWARD_DISTRIBUTION,
        "q1",
    )
    assert (await mesh.balance("alice"), await mesh.balance("bob")) == (900, 1_300)
    report = await mesh.admin.call("AuditLedger", pb.AuditLedgerRequest())
    assert report.ok and not report.mismatches and not report.negative_balances
    credit = next(s for s in report.supplies if s.asset == pb.ASSET_CREDIT)
    assert credit.issued == credit.held == 3_000


async def test_everyone_with_a_token_reads_proposals_and_parameters(mesh: Mesh) -> None:
    for caller in (mesh.alice, mesh.bob, mesh.worker, mesh.admin, mesh.service):
        page = await caller.call("ListProposals", pb.ListProposalsRequest())
        assert [p.proposal_id for p in page.proposals] == [mesh.proposal_id]
        got = await caller.call("GetParameters", pb.GetParametersRequest())
        assert got.parameters.version == 1 and got.parameters.pass_threshold_bps == 5_000
    for method, request in [
        ("ListProposals", pb.ListProposalsRequest()),
        ("GetParameters", pb.GetParametersRequest()),
        ("GetProposal", pb.GetProposalRequest(proposal_id=mesh.proposal_id)),
    ]:
        err = await refused(mesh.anonymous, method, request)
        assert (err.code, err.reason) == (Code.UNAUTHENTICATED, "TOKEN_MISSING"), method


# Governance ------------------------------------------------------------------


def vote_as_alice(proposal_id: str, choice: pb.VoteChoice = YES) -> pb.CastVoteRequest:
    return pb.CastVoteRequest(proposal_id=proposal_id, voter_account_id="alice", choice=choice)


async def test_nobody_votes_in_anothers_name_not_even_an_admin(mesh: Mesh) -> None:
    before = await mesh.state()
    for caller in (mesh.bob, mesh.worker, mesh.admin):
        err = await refused(caller, "CastVote", vote_as_alice(mesh.proposal_id))
        assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
    err = await refused(mesh.service, "CastVote", vote_as_alice(mesh.proposal_id))
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    assert await mesh.state() == before  # tally untouched, no stake locked

    tally = await mesh.alice.call("CastVote", vote_as_alice(mesh.proposal_id))
    assert (tally.proposal.yes_weight, tally.proposal.voter_count) == (100, 1)
    # An admin votes with an account of its own.
    await mesh.admin.call(
        "CreateAccount", pb.CreateAccountRequest(account_id="treasury", initial_gov_balance=50)
    )
    await mesh.admin.call("Stake", pb.StakeRequest(account_id="treasury", amount=50))
    tally = await mesh.admin.call(
        "CastVote",
        pb.CastVoteRequest(proposal_id=mesh.proposal_id, voter_account_id="treasury", choice=NO),
    )
    assert (tally.proposal.yes_weight, tally.proposal.no_weight) == (100, 50)


async def test_a_client_cannot_close_a_vote_early_to_have_it_pass(mesh: Mesh) -> None:
    pid = mesh.proposal_id
    await mesh.alice.call("CastVote", vote_as_alice(pid))  # 100 yes, leading
    before = await mesh.state()
    close = pb.CloseProposalRequest(proposal_id=pid)
    mesh.clock.advance(PERIOD_S - 0.001)  # one moment before the window ends
    for caller in (mesh.alice, mesh.bob, mesh.worker):
        err = await refused(caller, "CloseProposal", close)
        assert (err.code, err.reason) == (Code.FAILED_PRECONDITION, "VOTING_OPEN")
    err = await refused(mesh.service, "CloseProposal", close)
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    assert await mesh.state() == before
    got = await mesh.bob.call("GetProposal", pb.GetProposalRequest(proposal_id=pid))
    assert got.proposal.state == pb.PROPOSAL_STATE_OPEN and not got.proposal.HasField("close_time")
    # Voting goes on, and bob's 300 no decides it.
    await mesh.bob.call(
        "CastVote", pb.CastVoteRequest(proposal_id=pid, voter_account_id="bob", choice=NO)
    )
    mesh.clock.advance(0.001)  # at the window's end: anyone may close
    closed = await mesh.alice.call("CloseProposal", close)
    p = closed.proposal
    assert p.state == pb.PROPOSAL_STATE_REJECTED
    assert (p.close_time, p.closed_early_by) == (p.voting_end_time, "")
    assert p.voting_end_time.seconds == got.proposal.create_time.seconds + int(PERIOD_S)


async def test_an_admin_may_close_early_and_it_is_recorded(mesh: Mesh) -> None:
    pid = mesh.proposal_id
    await mesh.alice.call("CastVote", vote_as_alice(pid))
    mesh.clock.advance(10)
    closed = await mesh.admin.call("CloseProposal", pb.CloseProposalRequest(proposal_id=pid))
    p = closed.proposal
    assert (p.state, p.closed_early_by) == (pb.PROPOSAL_STATE_PASSED, "admin:ops")
    assert p.close_time.seconds == int(mesh.clock.now)
    assert p.voting_end_time.seconds == int(mesh.clock.now - 10 + PERIOD_S)  # window kept
    # Closed is closed: no more votes, a second close changes nothing, the stake is free.
    err = await refused(
        mesh.bob,
        "CastVote",
        pb.CastVoteRequest(proposal_id=pid, voter_account_id="bob", choice=NO),
    )
    assert (err.code, err.reason) == (Code.FAILED_PRECONDITION, "PROPOSAL_CLOSED")
    again = await mesh.bob.call("CloseProposal", pb.CloseProposalRequest(proposal_id=pid))
    assert again.proposal == p
    await mesh.alice.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=100))


async def test_code_outside_any_call_may_close_early(mesh: Mesh) -> None:
    proposal = await mesh.economy.close_proposal(mesh.proposal_id)
    assert (proposal.closed_early_by, proposal.close_time) == ("internal", mesh.clock.now)


# Look-alike ids ----------------------------------------------------------------


@pytest.mark.parametrize("lookalike", ["alice\n", "alice\r\n", "\nalice", "alice "])
async def test_no_second_account_that_looks_like_alice(mesh: Mesh, lookalike: str) -> None:
    before = await mesh.state()
    for caller in (mesh.bob, mesh.admin):
        err = await refused(caller, "CreateAccount", pb.CreateAccountRequest(account_id=lookalike))
        assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["account_id"])
    err = await refused(
        mesh.bob,
        "Transfer",
        pb.TransferRequest(from_account_id="bob", to_account_id=lookalike, amount=5),
    )
    assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["to_account_id"])
    err = await refused(mesh.admin, "GetAccount", pb.GetAccountRequest(account_id=lookalike))
    assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["account_id"])
    assert await mesh.state() == before
    assert await mesh.economy.owner_of(lookalike) is None


@pytest.mark.parametrize(
    "reserved", ["system:treasury", "system:mine", "escrow:esc-1", "stake:alice", "unbonding:x"]
)
async def test_nobody_opens_an_account_among_the_ledgers_own(mesh: Mesh, reserved: str) -> None:
    before = await mesh.state()
    for caller in (mesh.bob, mesh.admin, mesh.service):
        err = await refused(caller, "CreateAccount", pb.CreateAccountRequest(account_id=reserved))
        assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["account_id"])
    assert await mesh.state() == before


# Idempotency keeps the owner -----------------------------------------------------


async def test_request_id_binds_the_owner(mesh: Mesh) -> None:
    first = await mesh.admin.call(
        "CreateAccount",
        pb.CreateAccountRequest(account_id="mallory", owner="client:carol", request_id="k1"),
    )
    again = await mesh.admin.call(
        "CreateAccount",
        pb.CreateAccountRequest(account_id="mallory", owner="client:carol", request_id="k1"),
    )
    assert again == first and first.account.owner == "client:carol"
    before = await mesh.state()
    err = await refused(
        mesh.admin,
        "CreateAccount",
        pb.CreateAccountRequest(account_id="mallory", owner="client:dave", request_id="k1"),
    )
    assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["request_id"])
    assert await mesh.state() == before


async def test_a_replay_is_not_handed_to_another_caller(mesh: Mesh) -> None:
    """Request ids are the caller's own: another caller's same id is a request of its own
    (here for an id that is taken), never a replay of carol's answer."""
    request = pb.CreateAccountRequest(account_id="mallory", request_id="k2")
    first = await mesh.as_("client", "carol").call("CreateAccount", request)
    assert first.account.owner == "client:carol"
    assert await mesh.as_("client", "carol").call("CreateAccount", request) == first
    before = await mesh.state()
    err = await refused(mesh.as_("client", "dave"), "CreateAccount", request)
    assert err.code == Code.ALREADY_EXISTS
    assert await mesh.state() == before
