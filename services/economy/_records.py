"""Where the economy keeps things in the kernel, and how records read back as values.

Record names (string maps):

- ``a:<account>``: an account: ``kind``, ``owner``, ``name``, ``ct`` (create time), a
  balance field per asset, ``escrowed`` (a payer's CREDIT in open escrows),
  ``streak``, ``vv`` (bumped by each vote, guards unstaking).
- ``e:<escrow>``: an escrow's terms and state; its money is the account ``escrow:<id>``.
- ``c:<escrow>:<task>``: the marker of a task's capture.
- ``p:<proposal>``, ``v:<proposal>:<account>``: proposals and votes.
- ``u:<entry>``: an unbonding entry.
- ``params``: ``json`` and ``version``.
- ``d:<period>``: a scheduled distribution that happened.

Indexes: ``ix:accounts``, ``ix:owner:<principal>``, ``ix:escrows``,
``ix:escrows:owner:<principal>``, ``ix:proposals``, ``ix:votes:<account>`` and
``ix:stakers`` are lexicographic; ``ix:escrows:open`` (by expiry),
``ix:proposals:open`` (by end) and ``ix:unbonding`` (by completion) are scored.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshwright.economy.kernel import ISSUANCE, StoredEntry, account_record
from meshwright.economy.model import (
    Account,
    AccountKind,
    Asset,
    Escrow,
    EscrowState,
    Posting,
    Proposal,
    ProposalState,
    Transaction,
    TransactionKind,
)
from meshwright.economy.params import ParameterChange
from meshwright.economy.tiers import TierTable

TREASURY = "system:treasury"
REWARDS = "system:rewards"
SYSTEM_ACCOUNTS = {
    ISSUANCE: AccountKind.ISSUANCE,
    TREASURY: AccountKind.TREASURY,
    REWARDS: AccountKind.REWARDS_POOL,
}
RESERVED_PREFIXES = ("system:", "escrow:", "stake:", "unbonding:")
"""Account ids users cannot take: the ledger's own accounts live there."""

PARAMS = "params"
ACCOUNTS = "ix:accounts"
ESCROWS = "ix:escrows"
OPEN_ESCROWS = "ix:escrows:open"
PROPOSALS = "ix:proposals"
OPEN_PROPOSALS = "ix:proposals:open"
UNBONDING = "ix:unbonding"
STAKERS = "ix:stakers"


def acct(account_id: str) -> str:
    return account_record(account_id)


def stake_account(account_id: str) -> str:
    return f"stake:{account_id}"


def unbonding_account(account_id: str) -> str:
    return f"unbonding:{account_id}"


def escrow_account(escrow_id: str) -> str:
    return f"escrow:{escrow_id}"


def escrow_rec(escrow_id: str) -> str:
    return f"e:{escrow_id}"


def capture_rec(escrow_id: str, task_id: str) -> str:
    return f"c:{escrow_id}:{task_id}"


def proposal_rec(proposal_id: str) -> str:
    return f"p:{proposal_id}"


def vote_rec(proposal_id: str, account_id: str) -> str:
    return f"v:{proposal_id}:{account_id}"


def unbonding_rec(entry_id: str) -> str:
    return f"u:{entry_id}"


def owner_index(owner: str) -> str:
    return f"ix:owner:{owner}"


def escrow_owner_index(owner: str) -> str:
    return f"ix:escrows:owner:{owner}"


def votes_index(account_id: str) -> str:
    return f"ix:votes:{account_id}"


def user_records(account_id: str) -> list[str]:
    """The three records an account's view is made of (it, its stake, its unbonding)."""
    return [acct(account_id), acct(stake_account(account_id)), acct(unbonding_account(account_id))]


def num(row: Mapping[str, str], key: str) -> int:
    return int(row.get(key) or 0)


def opt_time(row: Mapping[str, str], key: str) -> float | None:
    value = row.get(key) or ""
    return float(value) if value else None


def account_of(
    account_id: str,
    row: Mapping[str, str],
    stake: Mapping[str, str],
    unbonding: Mapping[str, str],
    tiers: TierTable,
) -> Account:
    """An account's view from its record and its stake and unbonding accounts' records."""
    staked = num(stake, Asset.GOV.name)
    level = tiers.level_for(staked)
    return Account(
        account_id=account_id,
        display_name=row.get("name", ""),
        balance=num(row, Asset.CREDIT.name),
        staked=staked,
        escrowed=num(row, "escrowed"),
        create_time=float(row.get("ct") or 0.0),
        owner=row.get("owner", ""),
        gov_balance=num(row, Asset.GOV.name),
        unbonding=num(unbonding, Asset.GOV.name),
        kind=AccountKind[row.get("kind") or "USER"],
        streak=num(row, "streak"),
        tier=level.tier,
        multiplier_bps=level.multiplier_bps,
    )


def escrow_of(escrow_id: str, row: Mapping[str, str]) -> Escrow:
    return Escrow(
        escrow_id=escrow_id,
        payer_account_id=row.get("payer", ""),
        amount=num(row, "amount"),
        captured=num(row, "captured"),
        released=num(row, "released"),
        state=EscrowState[row.get("state") or "OPEN"],
        reference=row.get("ref", ""),
        create_time=float(row.get("ct") or 0.0),
        close_time=opt_time(row, "closed"),
        expire_time=float(row.get("exp") or 0.0),
        owner=row.get("owner", ""),
        captures=num(row, "n"),
    )


def proposal_of(proposal_id: str, row: Mapping[str, str]) -> Proposal:
    return Proposal(
        proposal_id=proposal_id,
        proposer_account_id=row.get("proposer", ""),
        title=row.get("title", ""),
        description=row.get("desc", ""),
        state=ProposalState[row.get("state") or "OPEN"],
        yes_weight=num(row, "YES"),
        no_weight=num(row, "NO"),
        abstain_weight=num(row, "ABSTAIN"),
        quorum=num(row, "quorum"),
        voter_count=num(row, "voters"),
        create_time=float(row.get("ct") or 0.0),
        voting_end_time=float(row.get("end") or 0.0),
        close_time=opt_time(row, "closed"),
        closed_early_by=row.get("early_by", ""),
        change=ParameterChange.from_json(row.get("change", "")),
        threshold_bps=num(row, "thr"),
        applied=row.get("applied") == "1",
    )


def transaction_of(entry: StoredEntry) -> Transaction:
    postings = tuple(Posting(p.account_id, Asset[p.asset], p.amount) for p in entry.postings)
    first_debit = postings[0] if postings else None
    first_credit = postings[1] if len(postings) > 1 else None
    return Transaction(
        transaction_id=entry.transaction_id,
        seq=entry.seq,
        kind=TransactionKind[entry.kind],
        from_account_id=first_debit.account_id if first_debit else "",
        to_account_id=first_credit.account_id if first_credit else "",
        amount=first_credit.amount if first_credit else 0,
        escrow_id=entry.refs.get("escrow_id", ""),
        memo=entry.memo,
        create_time=entry.time,
        asset=first_debit.asset if first_debit else Asset.CREDIT,
        postings=postings,
        request_id=entry.request_id,
        caller=entry.caller,
        task_id=entry.refs.get("task_id", ""),
        proposal_id=entry.refs.get("proposal_id", ""),
    )
