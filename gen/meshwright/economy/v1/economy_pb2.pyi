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

class EscrowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ESCROW_STATE_UNSPECIFIED: _ClassVar[EscrowState]
    ESCROW_STATE_OPEN: _ClassVar[EscrowState]
    ESCROW_STATE_CLOSED: _ClassVar[EscrowState]

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
ESCROW_STATE_UNSPECIFIED: EscrowState
ESCROW_STATE_OPEN: EscrowState
ESCROW_STATE_CLOSED: EscrowState
PROPOSAL_STATE_UNSPECIFIED: ProposalState
PROPOSAL_STATE_OPEN: ProposalState
PROPOSAL_STATE_PASSED: ProposalState
PROPOSAL_STATE_REJECTED: ProposalState
VOTE_CHOICE_UNSPECIFIED: VoteChoice
VOTE_CHOICE_YES: VoteChoice
VOTE_CHOICE_NO: VoteChoice
VOTE_CHOICE_ABSTAIN: VoteChoice

class Account(_message.Message):
    __slots__ = ("account_id", "display_name", "balance", "staked", "escrowed", "tier", "reward_multiplier_bps", "create_time", "owner")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    STAKED_FIELD_NUMBER: _ClassVar[int]
    ESCROWED_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REWARD_MULTIPLIER_BPS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    display_name: str
    balance: int
    staked: int
    escrowed: int
    tier: StakeTier
    reward_multiplier_bps: int
    create_time: _timestamp_pb2.Timestamp
    owner: str
    def __init__(self, account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., balance: _Optional[int] = ..., staked: _Optional[int] = ..., escrowed: _Optional[int] = ..., tier: _Optional[_Union[StakeTier, str]] = ..., reward_multiplier_bps: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("transaction_id", "kind", "from_account_id", "to_account_id", "amount", "escrow_id", "memo", "create_time")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    kind: TransactionKind
    from_account_id: str
    to_account_id: str
    amount: int
    escrow_id: str
    memo: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, transaction_id: _Optional[str] = ..., kind: _Optional[_Union[TransactionKind, str]] = ..., from_account_id: _Optional[str] = ..., to_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., escrow_id: _Optional[str] = ..., memo: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Escrow(_message.Message):
    __slots__ = ("escrow_id", "payer_account_id", "amount", "captured", "released", "state", "reference", "create_time", "close_time")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    payer_account_id: str
    amount: int
    captured: int
    released: int
    state: EscrowState
    reference: str
    create_time: _timestamp_pb2.Timestamp
    close_time: _timestamp_pb2.Timestamp
    def __init__(self, escrow_id: _Optional[str] = ..., payer_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., captured: _Optional[int] = ..., released: _Optional[int] = ..., state: _Optional[_Union[EscrowState, str]] = ..., reference: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("proposal_id", "proposer_account_id", "title", "description", "state", "yes_weight", "no_weight", "abstain_weight", "quorum", "voter_count", "create_time", "voting_end_time", "close_time", "closed_early_by")
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
    def __init__(self, proposal_id: _Optional[str] = ..., proposer_account_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., state: _Optional[_Union[ProposalState, str]] = ..., yes_weight: _Optional[int] = ..., no_weight: _Optional[int] = ..., abstain_weight: _Optional[int] = ..., quorum: _Optional[int] = ..., voter_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., voting_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., closed_early_by: _Optional[str] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id", "display_name", "initial_balance", "request_id", "owner")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BALANCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    display_name: str
    initial_balance: int
    request_id: str
    owner: str
    def __init__(self, account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., initial_balance: _Optional[int] = ..., request_id: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

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

class TransferRequest(_message.Message):
    __slots__ = ("from_account_id", "to_account_id", "amount", "memo", "request_id")
    FROM_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    from_account_id: str
    to_account_id: str
    amount: int
    memo: str
    request_id: str
    def __init__(self, from_account_id: _Optional[str] = ..., to_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., memo: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("account", "transaction")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    account: Account
    transaction: Transaction
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

class OpenEscrowRequest(_message.Message):
    __slots__ = ("escrow_id", "payer_account_id", "amount", "reference", "request_id")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    payer_account_id: str
    amount: int
    reference: str
    request_id: str
    def __init__(self, escrow_id: _Optional[str] = ..., payer_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., reference: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class OpenEscrowResponse(_message.Message):
    __slots__ = ("escrow",)
    ESCROW_FIELD_NUMBER: _ClassVar[int]
    escrow: Escrow
    def __init__(self, escrow: _Optional[_Union[Escrow, _Mapping]] = ...) -> None: ...

class CaptureEscrowRequest(_message.Message):
    __slots__ = ("escrow_id", "payee_account_id", "amount", "memo", "request_id")
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    PAYEE_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    escrow_id: str
    payee_account_id: str
    amount: int
    memo: str
    request_id: str
    def __init__(self, escrow_id: _Optional[str] = ..., payee_account_id: _Optional[str] = ..., amount: _Optional[int] = ..., memo: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CaptureEscrowResponse(_message.Message):
    __slots__ = ("escrow", "transaction")
    ESCROW_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    escrow: Escrow
    transaction: Transaction
    def __init__(self, escrow: _Optional[_Union[Escrow, _Mapping]] = ..., transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

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

class CreateProposalRequest(_message.Message):
    __slots__ = ("proposer_account_id", "title", "description", "voting_period", "quorum", "request_id")
    PROPOSER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VOTING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    proposer_account_id: str
    title: str
    description: str
    voting_period: _duration_pb2.Duration
    quorum: int
    request_id: str
    def __init__(self, proposer_account_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., voting_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., quorum: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

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
