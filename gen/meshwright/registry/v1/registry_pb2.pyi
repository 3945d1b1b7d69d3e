import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from meshwright.agent.v1 import agent_pb2 as _agent_pb2
from meshwright.mesh.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATE_UNSPECIFIED: _ClassVar[AgentState]
    AGENT_STATE_ACTIVE: _ClassVar[AgentState]
    AGENT_STATE_DRAINING: _ClassVar[AgentState]
    AGENT_STATE_INACTIVE: _ClassVar[AgentState]
    AGENT_STATE_STARTING: _ClassVar[AgentState]
    AGENT_STATE_ERROR: _ClassVar[AgentState]
    AGENT_STATE_STOPPED: _ClassVar[AgentState]

class AgentEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_EVENT_TYPE_UNSPECIFIED: _ClassVar[AgentEventType]
    AGENT_EVENT_TYPE_ADDED: _ClassVar[AgentEventType]
    AGENT_EVENT_TYPE_UPDATED: _ClassVar[AgentEventType]
    AGENT_EVENT_TYPE_REMOVED: _ClassVar[AgentEventType]
AGENT_STATE_UNSPECIFIED: AgentState
AGENT_STATE_ACTIVE: AgentState
AGENT_STATE_DRAINING: AgentState
AGENT_STATE_INACTIVE: AgentState
AGENT_STATE_STARTING: AgentState
AGENT_STATE_ERROR: AgentState
AGENT_STATE_STOPPED: AgentState
AGENT_EVENT_TYPE_UNSPECIFIED: AgentEventType
AGENT_EVENT_TYPE_ADDED: AgentEventType
AGENT_EVENT_TYPE_UPDATED: AgentEventType
AGENT_EVENT_TYPE_REMOVED: AgentEventType

class Agent(_message.Message):
    __slots__ = ("agent_id", "card", "endpoint", "state", "tags", "capacity", "load", "lease_id", "lease_ttl", "lease_expire_time", "register_time", "last_heartbeat_time", "payout_account_id", "state_change_time", "state_reason", "health_detail")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REGISTER_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    HEALTH_DETAIL_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    card: _agent_pb2.AgentCard
    endpoint: str
    state: AgentState
    tags: _containers.RepeatedScalarFieldContainer[str]
    capacity: int
    load: int
    lease_id: str
    lease_ttl: _duration_pb2.Duration
    lease_expire_time: _timestamp_pb2.Timestamp
    register_time: _timestamp_pb2.Timestamp
    last_heartbeat_time: _timestamp_pb2.Timestamp
    payout_account_id: str
    state_change_time: _timestamp_pb2.Timestamp
    state_reason: str
    health_detail: str
    def __init__(self, agent_id: _Optional[str] = ..., card: _Optional[_Union[_agent_pb2.AgentCard, _Mapping]] = ..., endpoint: _Optional[str] = ..., state: _Optional[_Union[AgentState, str]] = ..., tags: _Optional[_Iterable[str]] = ..., capacity: _Optional[int] = ..., load: _Optional[int] = ..., lease_id: _Optional[str] = ..., lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., register_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payout_account_id: _Optional[str] = ..., state_change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_reason: _Optional[str] = ..., health_detail: _Optional[str] = ...) -> None: ...

class RegisterAgentRequest(_message.Message):
    __slots__ = ("agent_id", "card", "endpoint", "tags", "capacity", "lease_ttl", "payout_account_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    card: _agent_pb2.AgentCard
    endpoint: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    capacity: int
    lease_ttl: _duration_pb2.Duration
    payout_account_id: str
    def __init__(self, agent_id: _Optional[str] = ..., card: _Optional[_Union[_agent_pb2.AgentCard, _Mapping]] = ..., endpoint: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., capacity: _Optional[int] = ..., lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., payout_account_id: _Optional[str] = ...) -> None: ...

class RegisterAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_id", "lease_id", "load", "draining", "error", "health_detail")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEALTH_DETAIL_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    lease_id: str
    load: int
    draining: bool
    error: str
    health_detail: str
    def __init__(self, agent_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., load: _Optional[int] = ..., draining: _Optional[bool] = ..., error: _Optional[str] = ..., health_detail: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class StreamHeartbeatsRequest(_message.Message):
    __slots__ = ("heartbeat",)
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    heartbeat: HeartbeatRequest
    def __init__(self, heartbeat: _Optional[_Union[HeartbeatRequest, _Mapping]] = ...) -> None: ...

class StreamHeartbeatsResponse(_message.Message):
    __slots__ = ("heartbeat", "error")
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    heartbeat: HeartbeatResponse
    error: _status_pb2.Status
    def __init__(self, heartbeat: _Optional[_Union[HeartbeatResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class DeregisterAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class DeregisterAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class ReportAgentFailureRequest(_message.Message):
    __slots__ = ("agent_id", "reason")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    reason: str
    def __init__(self, agent_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportAgentFailureResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class GetAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("skill", "tag", "state", "page_size", "page_token")
    SKILL_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    skill: str
    tag: str
    state: AgentState
    page_size: int
    page_token: str
    def __init__(self, skill: _Optional[str] = ..., tag: _Optional[str] = ..., state: _Optional[_Union[AgentState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchAgentsRequest(_message.Message):
    __slots__ = ("skill", "tag", "state", "after_revision")
    SKILL_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    skill: str
    tag: str
    state: AgentState
    after_revision: int
    def __init__(self, skill: _Optional[str] = ..., tag: _Optional[str] = ..., state: _Optional[_Union[AgentState, str]] = ..., after_revision: _Optional[int] = ...) -> None: ...

class WatchAgentsResponse(_message.Message):
    __slots__ = ("type", "agent", "revision")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    type: AgentEventType
    agent: Agent
    revision: int
    def __init__(self, type: _Optional[_Union[AgentEventType, str]] = ..., agent: _Optional[_Union[Agent, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...
