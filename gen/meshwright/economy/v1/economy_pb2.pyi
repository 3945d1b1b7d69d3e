import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from meshwright.mesh.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Asset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSET_UNSPECIFIED: _ClassVar[Asset]
    ASSET_CREDIT: _ClassVar[Asset]
    ASSET_GOV: _ClassVar[Asset]

class AccountKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_KIND_UNSPECIFIED: _ClassVar[AccountKind]
    ACCOUNT_KIND_USER: _ClassVar[AccountKind]
    ACCOUNT_KIND_ISSUANCE: _ClassVar[AccountKind]
    ACCOUNT_KIND_TREASURY: _ClassVar[AccountKind]
    ACCOUNT_KIND_REWARDS_POOL: _ClassVar[AccountKind]
    ACCOUNT_KIND_ESCROW: _ClassVar[AccountKind]
    ACCOUNT_KIND_STAKE: _ClassVar[AccountKind]
    ACCOUNT_KIND_UNBONDING: _ClassVar[AccountKind]

class StakeTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAKE_TIER_UNSPECIFIED: _ClassVar[StakeTier]
    STAKE_TIER_NONE: _ClassVar[StakeTier]
    STAKE_TIER_BRONZE: _ClassVar[StakeTier]
    STAKE_TIER_SILVER: _ClassVar[StakeTier]
    STAKE_TIER_GOLD: _ClassVar[StakeTier]
    STAKE_TIER_PLATINUM: _ClassVar[StakeTier]
    STAKE_TIER_DIAMOND: _ClassVar[StakeTier]

class TransactionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSACTION_KIND_UNSPECIFIED: _ClassVar[TransactionKind]
    TRANSACTION_KIND_MINT: _ClassVar[TransactionKind]
    TRANSACTION_KIND_TRANSFER: _ClassVar[TransactionKind]
    TRANSACTION_KIND_STAKE: _ClassVar[TransactionKind]
    TRANSACTION_KIND_UNSTAKE: _ClassVar[TransactionKind]
    TRANSACTION_KIND_ESCROW_OPEN: _ClassVar[TransactionKind]
    TRANSACTION_KIND_ESCROW_CAPTURE: _ClassVar[TransactionKind]
    TRANSACTION_KIND_ESCROW_RELEASE: _ClassVar[TransactionKind]
    TRANSACTION_KIND_ESCROW_EXPIRE: _ClassVar[TransactionKind]
    TRANSACTION_KIND_UNBOND_COMPLETE: _ClassVar[TransactionKind]
    TRANSACTION_KIND_REWARD_DISTRIBUTION: _ClassVar[TransactionKind]
    TRANSACTION_KIND_PARAMETER_CHANGE: _ClassVar[TransactionKind]

class EscrowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ESCROW_STATE_UNSPECIFIED: _ClassVar[EscrowState]
    ESCROW_STATE_OPEN: _ClassVar[EscrowState]
    ESCROW_STATE_CLOSED: _ClassVar[EscrowState]
    ESCROW_STATE_EXPIRED: _ClassVar[EscrowState]

class ProposalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_STATE_UNSPECIFIED: _ClassVar[ProposalState]
    PROPOSAL_STATE_OPEN: _ClassVar[ProposalState]
    PROPOSAL_STATE_PASSED: _ClassVar[ProposalState]
    PROPOSAL_STATE_REJECTED: _ClassVar[ProposalState]

class VoteChoice(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOTE_CHOICE_UNSPECIFIED: _ClassVar[VoteChoice]
    VOTE_CHOICE_YES: _ClassVar[VoteChoice]
    VOTE_CHOICE_NO: _ClassVar[VoteChoice]
    VOTE_CHOICE_ABSTAIN: _ClassVar[VoteChoice]
ASSET_UNSPECIFIED: Asset
ASSET_CREDIT: Asset
ASSET_GOV: Asset
ACCOUNT_KIND_UNSPECIFIED: AccountKind
ACCOUNT_KIND_USER: AccountKind
ACCOUNT_KIND_ISSUANCE: AccountKind
ACCOUNT_KIND_TREASURY: AccountKind
ACCOUNT_KIND_REWARDS_POOL: AccountKind
ACCOUNT_KIND_ESCROW: AccountKind
ACCOUNT_KIND_STAKE: AccountKind
ACCOUNT_KIND_UNBONDING: AccountKind
STAKE_TIER_UNSPECIFIED: StakeTier
STAKE_TIER_NONE: StakeTier
STAKE_TIER_BRONZE: StakeTier
STAKE_TIER_SILVER: StakeTier
STAKE_TIER_GOLD: StakeTier
STAKE_TIER_PLATINUM: StakeTier
STAKE_TIER_DIAMOND: StakeTier
TRANSACTION_KIND_UNSPECIFIED: TransactionKind
TRANSACTION_KIND_MINT: TransactionKind
TRANSACTION_KIND_TRANSFER: TransactionKind
TRANSACTION_KIND_STAKE: TransactionKind
TRANSACTION_KIND_UNSTAKE: TransactionKind
TRANSACTION_KIND_ESCROW_OPEN: TransactionKind
TRANSACTION_KIND_ESCROW_CAPTURE: TransactionKind
TRANSACTION_KIND_ESCROW_RELEASE: TransactionKind
TRANSACTION_KIND_ESCROW_EXPIRE: TransactionKind
TRANSACTION_KIND_UNBOND_COMPLETE: TransactionKind
TRANSACTION_KIND_REWARD_DISTRIBUTION: TransactionKind
TRANSACTION_KIND_PARAMETER_CHANGE: TransactionKind
ESCROW_STATE_UNSPECIFIED: EscrowState
ESCROW_STATE_OPEN: EscrowState
ESCROW_STATE_CLOSED: EscrowState
ESCROW_STATE_EXPIRED: EscrowState
PROPOSAL_STATE_UNSPECIFIED: ProposalState
PROPOSAL_STATE_OPEN: ProposalState
PROPOSAL_STATE_PASSED: ProposalState
PROPOSAL_STATE_REJECTED: ProposalState
VOTE_CHOICE_UNSPECIFIED: VoteChoice
VOTE_CHOICE_YES: VoteChoice
VOTE_CHOICE_NO: VoteChoice
VOTE_CHOICE_ABSTAIN: VoteChoice

class Account(_message.Message):
    __slots__ = ("account_id", "display_name", "balance", "staked", "escrowed", "tier", "reward_multiplier_bps", "create_time", "owner", "gov_balance", "unbonding", "kind", "streak")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    STAKED_FIELD_NUMBER: _ClassVar[int]
    ESCROWED_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REWARD_MULTIPLIER_BPS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    GOV_BALANCE_FIELD_NUMBER: _ClassVar[int]
    UNBONDING_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STREAK_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    display_name: str
    balance: int
    staked: int
    escrowed: int
    tier: StakeTier
    reward_multiplier_bps: int
    create_time: _timestamp_pb2.Timestamp
    owner: str
    gov_balance: int
    unbonding: int
    kind: AccountKind
    streak: int
    def __init__(self, account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., balance: _Optional[int] = ..., staked: _Optional[int] = ..., escrowed: _Optional[int] = ..., tier: _Optional[_Union[StakeTier, str]] = ..., reward_multiplier_bps: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., gov_balance: _Optional[int] = ..., unbonding: _Optional[int] = ..., kind: _Optional[_Union[AccountKind, str]] = ..., streak: _Optional[int] = ...) -> None: ...

class Posting(_message.Message):
    __slots__ = ("account_id", "asset", "amount")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    asset: Asset
    amount: int
    def __init__(self, account_id: _Optional[str] = ..., asset: _Optional[_Union[Asset, str]] = ..., amount: _Optional[int] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("transaction_id", "kind", "from_account_id", "to_account_id", "amount", "escrow_id", "memo", "create_time", "postings", "request_id", "caller", "asset", "task_id", "proposal_id")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    POSTINGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    kind: TransactionKind
    from_account_id: str
    to_account_id: str
    amount: int
    escrow_id: str
    memo: str
    create_time: _timestamp_pb2.Timestamp
    postings: _containers.RepeatedCompositeFieldContainer[Posting]
    request_id: str
    caller: str
    asset: Asset
    task_id: str
    proposal_id: str
    def __init__(self, transaction_id: _Optional[str] = ..., kind: _Optional[_Union[TransactionKind, str]] = ..., from_account_id: _Optional[str] = ..., to_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., escrow_id: _Optional[str] = ..., memo: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., postings: _Optional[_Iterable[_Union[Posting, _Mapping]]] = ..., request_id: _Optional[str] = ..., caller: _Optional[str] = ..., asset: _Optional[_Union[Asset, str]] = ..., task_id: _Optional[str] = ..., proposal_id: _Optional[str] = ...) -> None: ...

class Escrow(_message.Message):
    __slots__ = ("escrow_id", "payer_account_id", "amount", "captured", "released", "state", "reference", "create_time", "close_time", "expire_time", "owner", "captures")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CAPTURES_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    payer_account_id: str
    amount: int
    captured: int
    released: int
    state: EscrowState
    reference: str
    create_time: _timestamp_pb2.Timestamp
    close_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    owner: str
    captures: int
    def __init__(self, escrow_id: _Optional[str] = ..., payer_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., captured: _Optional[int] = ..., released: _Optional[int] = ..., state: _Optional[_Union[EscrowState, str]] = ..., reference: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., captures: _Optional[int] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("proposal_id", "proposer_account_id", "title", "description", "state", "yes_weight", "no_weight", "abstain_weight", "quorum", "voter_count", "create_time", "voting_end_time", "close_time", "closed_early_by", "change", "threshold_bps", "applied")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    YES_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NO_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ABSTAIN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    VOTER_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VOTING_END_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSED_EARLY_BY_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_BPS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    proposer_account_id: str
    title: str
    description: str
    state: ProposalState
    yes_weight: int
    no_weight: int
    abstain_weight: int
    quorum: int
    voter_count: int
    create_time: _timestamp_pb2.Timestamp
    voting_end_time: _timestamp_pb2.Timestamp
    close_time: _timestamp_pb2.Timestamp
    closed_early_by: str
    change: ParameterChange
    threshold_bps: int
    applied: bool
    def __init__(self, proposal_id: _Optional[str] = ..., proposer_account_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., state: _Optional[_Union[ProposalState, str]] = ..., yes_weight: _Optional[int] = ..., no_weight: _Optional[int] = ..., abstain_weight: _Optional[int] = ..., quorum: _Optional[int] = ..., voter_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., voting_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., closed_early_by: _Optional[str] = ..., change: _Optional[_Union[ParameterChange, _Mapping]] = ..., threshold_bps: _Optional[int] = ..., applied: _Optional[bool] = ...) -> None: ...

class TierLevel(_message.Message):
    __slots__ = ("tier", "min_stake", "multiplier_bps")
    TIER_FIELD_NUMBER: _ClassVar[int]
    MIN_STAKE_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_BPS_FIELD_NUMBER: _ClassVar[int]
    tier: StakeTier
    min_stake: int
    multiplier_bps: int
    def __init__(self, tier: _Optional[_Union[StakeTier, str]] = ..., min_stake: _Optional[int] = ..., multiplier_bps: _Optional[int] = ...) -> None: ...

class TierSchedule(_message.Message):
    __slots__ = ("levels",)
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedCompositeFieldContainer[TierLevel]
    def __init__(self, levels: _Optional[_Iterable[_Union[TierLevel, _Mapping]]] = ...) -> None: ...

class StreakBonus(_message.Message):
    __slots__ = ("threshold", "bonus_bps")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BONUS_BPS_FIELD_NUMBER: _ClassVar[int]
    threshold: int
    bonus_bps: int
    def __init__(self, threshold: _Optional[int] = ..., bonus_bps: _Optional[int] = ...) -> None: ...

class RewardDistribution(_message.Message):
    __slots__ = ("amount", "interval")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    amount: int
    interval: _duration_pb2.Duration
    def __init__(self, amount: _Optional[int] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EconomyParameters(_message.Message):
    __slots__ = ("tiers", "transfer_fee_bps", "unbonding_period", "streak_bonus", "reward_distribution", "pass_threshold_bps", "escrow_ttl", "version")
    TIERS_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    UNBONDING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    STREAK_BONUS_FIELD_NUMBER: _ClassVar[int]
    REWARD_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PASS_THRESHOLD_BPS_FIELD_NUMBER: _ClassVar[int]
    ESCROW_TTL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tiers: _containers.RepeatedCompositeFieldContainer[TierLevel]
    transfer_fee_bps: int
    unbonding_period: _duration_pb2.Duration
    streak_bonus: StreakBonus
    reward_distribution: RewardDistribution
    pass_threshold_bps: int
    escrow_ttl: _duration_pb2.Duration
    version: int
    def __init__(self, tiers: _Optional[_Iterable[_Union[TierLevel, _Mapping]]] = ..., transfer_fee_bps: _Optional[int] = ..., unbonding_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., streak_bonus: _Optional[_Union[StreakBonus, _Mapping]] = ..., reward_distribution: _Optional[_Union[RewardDistribution, _Mapping]] = ..., pass_threshold_bps: _Optional[int] = ..., escrow_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class ParameterChange(_message.Message):
    __slots__ = ("tiers", "transfer_fee_bps", "unbonding_period", "streak_bonus", "reward_distribution", "pass_threshold_bps", "escrow_ttl")
    TIERS_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    UNBONDING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    STREAK_BONUS_FIELD_NUMBER: _ClassVar[int]
    REWARD_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PASS_THRESHOLD_BPS_FIELD_NUMBER: _ClassVar[int]
    ESCROW_TTL_FIELD_NUMBER: _ClassVar[int]
    tiers: TierSchedule
    transfer_fee_bps: int
    unbonding_period: _duration_pb2.Duration
    streak_bonus: StreakBonus
    reward_distribution: RewardDistribution
    pass_threshold_bps: int
    escrow_ttl: _duration_pb2.Duration
    def __init__(self, tiers: _Optional[_Union[TierSchedule, _Mapping]] = ..., transfer_fee_bps: _Optional[int] = ..., unbonding_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., streak_bonus: _Optional[_Union[StreakBonus, _Mapping]] = ..., reward_distribution: _Optional[_Union[RewardDistribution, _Mapping]] = ..., pass_threshold_bps: _Optional[int] = ..., escrow_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class UnbondingEntry(_message.Message):
    __slots__ = ("entry_id", "account_id", "amount", "complete_time")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    account_id: str
    amount: int
    complete_time: _timestamp_pb2.Timestamp
    def __init__(self, entry_id: _Optional[str] = ..., account_id: _Optional[str] = ..., amount: _Optional[int] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id", "display_name", "initial_balance", "request_id", "owner", "initial_gov_balance")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BALANCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    INITIAL_GOV_BALANCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    display_name: str
    initial_balance: int
    request_id: str
    owner: str
    initial_gov_balance: int
    def __init__(self, account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., initial_balance: _Optional[int] = ..., request_id: _Optional[str] = ..., owner: _Optional[str] = ..., initial_gov_balance: _Optional[int] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class MintRequest(_message.Message):
    __slots__ = ("account_id", "asset", "amount", "memo", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    asset: Asset
    amount: int
    memo: str
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., asset: _Optional[_Union[Asset, str]] = ..., amount: _Optional[int] = ..., memo: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class MintResponse(_message.Message):
    __slots__ = ("account", "transaction")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    account: Account
    transaction: Transaction
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("owner", "kind", "page_size", "page_token")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    owner: str
    kind: AccountKind
    page_size: int
    page_token: str
    def __init__(self, owner: _Optional[str] = ..., kind: _Optional[_Union[AccountKind, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("from_account_id", "to_account_id", "amount", "memo", "request_id", "asset")
    FROM_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    from_account_id: str
    to_account_id: str
    amount: int
    memo: str
    request_id: str
    asset: Asset
    def __init__(self, from_account_id: _Optional[str] = ..., to_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., memo: _Optional[str] = ..., request_id: _Optional[str] = ..., asset: _Optional[_Union[Asset, str]] = ...) -> None: ...

class TransferResponse(_message.Message):
    __slots__ = ("transaction", "from_account", "to_account")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    from_account: Account
    to_account: Account
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ..., from_account: _Optional[_Union[Account, _Mapping]] = ..., to_account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token", "asset", "kind")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    asset: Asset
    kind: TransactionKind
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., asset: _Optional[_Union[Asset, str]] = ..., kind: _Optional[_Union[TransactionKind, str]] = ...) -> None: ...

class ListTransactionsResponse(_message.Message):
    __slots__ = ("transactions", "next_page_token")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    next_page_token: str
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StakeRequest(_message.Message):
    __slots__ = ("account_id", "amount", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    amount: int
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., amount: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class StakeResponse(_message.Message):
    __slots__ = ("account", "transaction")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    account: Account
    transaction: Transaction
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

class UnstakeRequest(_message.Message):
    __slots__ = ("account_id", "amount", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    amount: int
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., amount: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class UnstakeResponse(_message.Message):
    __slots__ = ("account", "transaction", "unbonding")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    UNBONDING_FIELD_NUMBER: _ClassVar[int]
    account: Account
    transaction: Transaction
    unbonding: UnbondingEntry
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., transaction: _Optional[_Union[Transaction, _Mapping]] = ..., unbonding: _Optional[_Union[UnbondingEntry, _Mapping]] = ...) -> None: ...

class OpenEscrowRequest(_message.Message):
    __slots__ = ("escrow_id", "payer_account_id", "amount", "reference", "request_id", "ttl")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    payer_account_id: str
    amount: int
    reference: str
    request_id: str
    ttl: _duration_pb2.Duration
    def __init__(self, escrow_id: _Optional[str] = ..., payer_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., reference: _Optional[str] = ..., request_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class OpenEscrowResponse(_message.Message):
    __slots__ = ("escrow",)
    ESCROW_FIELD_NUMBER: _ClassVar[int]
    escrow: Escrow
    def __init__(self, escrow: _Optional[_Union[Escrow, _Mapping]] = ...) -> None: ...

class CaptureEscrowRequest(_message.Message):
    __slots__ = ("escrow_id", "payee_account_id", "amount", "memo", "request_id", "task_id", "payee_owner")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    PAYEE_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAYEE_OWNER_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    payee_account_id: str
    amount: int
    memo: str
    request_id: str
    task_id: str
    payee_owner: str
    def __init__(self, escrow_id: _Optional[str] = ..., payee_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., memo: _Optional[str] = ..., request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., payee_owner: _Optional[str] = ...) -> None: ...

class CaptureEscrowResponse(_message.Message):
    __slots__ = ("escrow", "transaction", "bonus")
    ESCROW_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    BONUS_FIELD_NUMBER: _ClassVar[int]
    escrow: Escrow
    transaction: Transaction
    bonus: int
    def __init__(self, escrow: _Optional[_Union[Escrow, _Mapping]] = ..., transaction: _Optional[_Union[Transaction, _Mapping]] = ..., bonus: _Optional[int] = ...) -> None: ...

class ReleaseEscrowRequest(_message.Message):
    __slots__ = ("escrow_id", "request_id")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    request_id: str
    def __init__(self, escrow_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReleaseEscrowResponse(_message.Message):
    __slots__ = ("escrow",)
    ESCROW_FIELD_NUMBER: _ClassVar[int]
    escrow: Escrow
    def __init__(self, escrow: _Optional[_Union[Escrow, _Mapping]] = ...) -> None: ...

class RenewEscrowRequest(_message.Message):
    __slots__ = ("escrow_id", "ttl")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    ttl: _duration_pb2.Duration
    def __init__(self, escrow_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RenewEscrowResponse(_message.Message):
    __slots__ = ("escrow",)
    ESCROW_FIELD_NUMBER: _ClassVar[int]
    escrow: Escrow
    def __init__(self, escrow: _Optional[_Union[Escrow, _Mapping]] = ...) -> None: ...

class GetEscrowRequest(_message.Message):
    __slots__ = ("escrow_id",)
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    def __init__(self, escrow_id: _Optional[str] = ...) -> None: ...

class GetEscrowResponse(_message.Message):
    __slots__ = ("escrow",)
    ESCROW_FIELD_NUMBER: _ClassVar[int]
    escrow: Escrow
    def __init__(self, escrow: _Optional[_Union[Escrow, _Mapping]] = ...) -> None: ...

class ListEscrowsRequest(_message.Message):
    __slots__ = ("owner", "state", "page_size", "page_token")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    owner: str
    state: EscrowState
    page_size: int
    page_token: str
    def __init__(self, owner: _Optional[str] = ..., state: _Optional[_Union[EscrowState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEscrowsResponse(_message.Message):
    __slots__ = ("escrows", "next_page_token")
    ESCROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    escrows: _containers.RepeatedCompositeFieldContainer[Escrow]
    next_page_token: str
    def __init__(self, escrows: _Optional[_Iterable[_Union[Escrow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReportTaskFailureRequest(_message.Message):
    __slots__ = ("payee_account_id", "escrow_id", "task_id")
    PAYEE_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    payee_account_id: str
    escrow_id: str
    task_id: str
    def __init__(self, payee_account_id: _Optional[str] = ..., escrow_id: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class ReportTaskFailureResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class DistributeRewardsRequest(_message.Message):
    __slots__ = ("amount", "memo", "request_id")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    amount: int
    memo: str
    request_id: str
    def __init__(self, amount: _Optional[int] = ..., memo: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DistributeRewardsResponse(_message.Message):
    __slots__ = ("transaction", "recipient_count")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    recipient_count: int
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ..., recipient_count: _Optional[int] = ...) -> None: ...

class CreateProposalRequest(_message.Message):
    __slots__ = ("proposer_account_id", "title", "description", "voting_period", "quorum", "request_id", "change", "threshold_bps")
    PROPOSER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VOTING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_BPS_FIELD_NUMBER: _ClassVar[int]
    proposer_account_id: str
    title: str
    description: str
    voting_period: _duration_pb2.Duration
    quorum: int
    request_id: str
    change: ParameterChange
    threshold_bps: int
    def __init__(self, proposer_account_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., voting_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., quorum: _Optional[int] = ..., request_id: _Optional[str] = ..., change: _Optional[_Union[ParameterChange, _Mapping]] = ..., threshold_bps: _Optional[int] = ...) -> None: ...

class CreateProposalResponse(_message.Message):
    __slots__ = ("proposal",)
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ...) -> None: ...

class CastVoteRequest(_message.Message):
    __slots__ = ("proposal_id", "voter_account_id", "choice", "request_id")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    VOTER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    voter_account_id: str
    choice: VoteChoice
    request_id: str
    def __init__(self, proposal_id: _Optional[str] = ..., voter_account_id: _Optional[str] = ..., choice: _Optional[_Union[VoteChoice, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CastVoteResponse(_message.Message):
    __slots__ = ("proposal",)
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ...) -> None: ...

class GetProposalRequest(_message.Message):
    __slots__ = ("proposal_id",)
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    def __init__(self, proposal_id: _Optional[str] = ...) -> None: ...

class GetProposalResponse(_message.Message):
    __slots__ = ("proposal",)
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ...) -> None: ...

class ListProposalsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: ProposalState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[ProposalState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProposalsResponse(_message.Message):
    __slots__ = ("proposals", "next_page_token")
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    next_page_token: str
    def __init__(self, proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CloseProposalRequest(_message.Message):
    __slots__ = ("proposal_id",)
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    def __init__(self, proposal_id: _Optional[str] = ...) -> None: ...

class CloseProposalResponse(_message.Message):
    __slots__ = ("proposal",)
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ...) -> None: ...

class GetParametersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetParametersResponse(_message.Message):
    __slots__ = ("parameters",)
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    parameters: EconomyParameters
    def __init__(self, parameters: _Optional[_Union[EconomyParameters, _Mapping]] = ...) -> None: ...

class AuditLedgerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AssetSupply(_message.Message):
    __slots__ = ("asset", "issued", "held")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    asset: Asset
    issued: int
    held: int
    def __init__(self, asset: _Optional[_Union[Asset, str]] = ..., issued: _Optional[int] = ..., held: _Optional[int] = ...) -> None: ...

class BalanceMismatch(_message.Message):
    __slots__ = ("account_id", "asset", "stored", "replayed")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    asset: Asset
    stored: int
    replayed: int
    def __init__(self, account_id: _Optional[str] = ..., asset: _Optional[_Union[Asset, str]] = ..., stored: _Optional[int] = ..., replayed: _Optional[int] = ...) -> None: ...

class AuditLedgerResponse(_message.Message):
    __slots__ = ("ok", "transaction_count", "account_count", "supplies", "mismatches", "unbalanced_transaction_ids", "negative_balances")
    OK_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUPPLIES_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    UNBALANCED_TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_BALANCES_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    transaction_count: int
    account_count: int
    supplies: _containers.RepeatedCompositeFieldContainer[AssetSupply]
    mismatches: _containers.RepeatedCompositeFieldContainer[BalanceMismatch]
    unbalanced_transaction_ids: _containers.RepeatedScalarFieldContainer[str]
    negative_balances: _containers.RepeatedCompositeFieldContainer[BalanceMismatch]
    def __init__(self, ok: _Optional[bool] = ..., transaction_count: _Optional[int] = ..., account_count: _Optional[int] = ..., supplies: _Optional[_Iterable[_Union[AssetSupply, _Mapping]]] = ..., mismatches: _Optional[_Iterable[_Union[BalanceMismatch, _Mapping]]] = ..., unbalanced_transaction_ids: _Optional[_Iterable[str]] = ..., negative_balances: _Optional[_Iterable[_Union[BalanceMismatch, _Mapping]]] = ...) -> None: ...
