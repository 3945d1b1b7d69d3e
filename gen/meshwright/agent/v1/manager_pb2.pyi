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

class RestartPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESTART_POLICY_UNSPECIFIED: _ClassVar[RestartPolicy]
    RESTART_POLICY_ALWAYS: _ClassVar[RestartPolicy]
    RESTART_POLICY_ON_FAILURE: _ClassVar[RestartPolicy]
    RESTART_POLICY_NEVER: _ClassVar[RestartPolicy]

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    PROCESS_STATE_STARTING: _ClassVar[ProcessState]
    PROCESS_STATE_RUNNING: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPED: _ClassVar[ProcessState]
    PROCESS_STATE_ERROR: _ClassVar[ProcessState]
    PROCESS_STATE_RESTARTING: _ClassVar[ProcessState]
RESTART_POLICY_UNSPECIFIED: RestartPolicy
RESTART_POLICY_ALWAYS: RestartPolicy
RESTART_POLICY_ON_FAILURE: RestartPolicy
RESTART_POLICY_NEVER: RestartPolicy
PROCESS_STATE_UNSPECIFIED: ProcessState
PROCESS_STATE_STARTING: ProcessState
PROCESS_STATE_RUNNING: ProcessState
PROCESS_STATE_STOPPED: ProcessState
PROCESS_STATE_ERROR: ProcessState
PROCESS_STATE_RESTARTING: ProcessState

class ManagedAgentSpec(_message.Message):
    __slots__ = ("module", "command", "a2a_card_url", "args", "env", "restart_policy", "replicas", "app_dir")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    A2A_CARD_URL_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    APP_DIR_FIELD_NUMBER: _ClassVar[int]
    module: str
    command: CommandLine
    a2a_card_url: str
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    restart_policy: RestartPolicy
    replicas: int
    app_dir: str
    def __init__(self, module: _Optional[str] = ..., command: _Optional[_Union[CommandLine, _Mapping]] = ..., a2a_card_url: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., restart_policy: _Optional[_Union[RestartPolicy, str]] = ..., replicas: _Optional[int] = ..., app_dir: _Optional[str] = ...) -> None: ...

class CommandLine(_message.Message):
    __slots__ = ("argv",)
    ARGV_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, argv: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentProcess(_message.Message):
    __slots__ = ("replica", "state", "pid", "exited", "exit_code", "restarts", "start_time", "uptime", "agent_id", "endpoint", "reason", "metrics_url")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METRICS_URL_FIELD_NUMBER: _ClassVar[int]
    replica: int
    state: ProcessState
    pid: int
    exited: bool
    exit_code: int
    restarts: int
    start_time: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    agent_id: str
    endpoint: str
    reason: str
    metrics_url: str
    def __init__(self, replica: _Optional[int] = ..., state: _Optional[_Union[ProcessState, str]] = ..., pid: _Optional[int] = ..., exited: _Optional[bool] = ..., exit_code: _Optional[int] = ..., restarts: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., agent_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., reason: _Optional[str] = ..., metrics_url: _Optional[str] = ...) -> None: ...

class ManagedAgentMetrics(_message.Message):
    __slots__ = ("tasks_finished", "tasks_failed", "tasks_in_flight", "mean_task_seconds", "rss_bytes", "cpu_seconds", "restarts")
    TASKS_FINISHED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    TASKS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MEAN_TASK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    tasks_finished: int
    tasks_failed: int
    tasks_in_flight: int
    mean_task_seconds: float
    rss_bytes: int
    cpu_seconds: float
    restarts: int
    def __init__(self, tasks_finished: _Optional[int] = ..., tasks_failed: _Optional[int] = ..., tasks_in_flight: _Optional[int] = ..., mean_task_seconds: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., cpu_seconds: _Optional[float] = ..., restarts: _Optional[int] = ...) -> None: ...

class ManagedAgent(_message.Message):
    __slots__ = ("name", "spec", "processes", "ready_replicas", "metrics", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    READY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: ManagedAgentSpec
    processes: _containers.RepeatedCompositeFieldContainer[AgentProcess]
    ready_replicas: int
    metrics: ManagedAgentMetrics
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[ManagedAgentSpec, _Mapping]] = ..., processes: _Optional[_Iterable[_Union[AgentProcess, _Mapping]]] = ..., ready_replicas: _Optional[int] = ..., metrics: _Optional[_Union[ManagedAgentMetrics, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ManagedAgentEvent(_message.Message):
    __slots__ = ("sequence", "time", "replica", "from_state", "to_state", "reason", "pid")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    replica: int
    from_state: ProcessState
    to_state: ProcessState
    reason: str
    pid: int
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replica: _Optional[int] = ..., from_state: _Optional[_Union[ProcessState, str]] = ..., to_state: _Optional[_Union[ProcessState, str]] = ..., reason: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class CreateManagedAgentRequest(_message.Message):
    __slots__ = ("name", "spec", "start")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: ManagedAgentSpec
    start: bool
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[ManagedAgentSpec, _Mapping]] = ..., start: _Optional[bool] = ...) -> None: ...

class CreateManagedAgentResponse(_message.Message):
    __slots__ = ("managed_agent",)
    MANAGED_AGENT_FIELD_NUMBER: _ClassVar[int]
    managed_agent: ManagedAgent
    def __init__(self, managed_agent: _Optional[_Union[ManagedAgent, _Mapping]] = ...) -> None: ...

class GetManagedAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetManagedAgentResponse(_message.Message):
    __slots__ = ("managed_agent",)
    MANAGED_AGENT_FIELD_NUMBER: _ClassVar[int]
    managed_agent: ManagedAgent
    def __init__(self, managed_agent: _Optional[_Union[ManagedAgent, _Mapping]] = ...) -> None: ...

class ListManagedAgentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListManagedAgentsResponse(_message.Message):
    __slots__ = ("managed_agents", "next_page_token")
    MANAGED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    managed_agents: _containers.RepeatedCompositeFieldContainer[ManagedAgent]
    next_page_token: str
    def __init__(self, managed_agents: _Optional[_Iterable[_Union[ManagedAgent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteManagedAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteManagedAgentResponse(_message.Message):
    __slots__ = ("managed_agent",)
    MANAGED_AGENT_FIELD_NUMBER: _ClassVar[int]
    managed_agent: ManagedAgent
    def __init__(self, managed_agent: _Optional[_Union[ManagedAgent, _Mapping]] = ...) -> None: ...

class StartManagedAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StartManagedAgentResponse(_message.Message):
    __slots__ = ("managed_agent",)
    MANAGED_AGENT_FIELD_NUMBER: _ClassVar[int]
    managed_agent: ManagedAgent
    def __init__(self, managed_agent: _Optional[_Union[ManagedAgent, _Mapping]] = ...) -> None: ...

class StopManagedAgentRequest(_message.Message):
    __slots__ = ("name", "grace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    grace: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StopManagedAgentResponse(_message.Message):
    __slots__ = ("managed_agent",)
    MANAGED_AGENT_FIELD_NUMBER: _ClassVar[int]
    managed_agent: ManagedAgent
    def __init__(self, managed_agent: _Optional[_Union[ManagedAgent, _Mapping]] = ...) -> None: ...

class RestartManagedAgentRequest(_message.Message):
    __slots__ = ("name", "replica")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    name: str
    replica: int
    def __init__(self, name: _Optional[str] = ..., replica: _Optional[int] = ...) -> None: ...

class RestartManagedAgentResponse(_message.Message):
    __slots__ = ("managed_agent",)
    MANAGED_AGENT_FIELD_NUMBER: _ClassVar[int]
    managed_agent: ManagedAgent
    def __init__(self, managed_agent: _Optional[_Union[ManagedAgent, _Mapping]] = ...) -> None: ...

class ScaleManagedAgentRequest(_message.Message):
    __slots__ = ("name", "replicas")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    replicas: int
    def __init__(self, name: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class ScaleManagedAgentResponse(_message.Message):
    __slots__ = ("managed_agent",)
    MANAGED_AGENT_FIELD_NUMBER: _ClassVar[int]
    managed_agent: ManagedAgent
    def __init__(self, managed_agent: _Optional[_Union[ManagedAgent, _Mapping]] = ...) -> None: ...

class ListManagedAgentEventsRequest(_message.Message):
    __slots__ = ("name", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListManagedAgentEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ManagedAgentEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[ManagedAgentEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetManagedAgentLogsRequest(_message.Message):
    __slots__ = ("name", "replica", "tail_lines")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    replica: int
    tail_lines: int
    def __init__(self, name: _Optional[str] = ..., replica: _Optional[int] = ..., tail_lines: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("replica", "text", "time", "stream")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    replica: int
    text: str
    time: _timestamp_pb2.Timestamp
    stream: str
    def __init__(self, replica: _Optional[int] = ..., text: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream: _Optional[str] = ...) -> None: ...

class GetManagedAgentLogsResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class StreamManagedAgentLogsRequest(_message.Message):
    __slots__ = ("name", "replica", "tail_lines")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    replica: int
    tail_lines: int
    def __init__(self, name: _Optional[str] = ..., replica: _Optional[int] = ..., tail_lines: _Optional[int] = ...) -> None: ...

class StreamManagedAgentLogsResponse(_message.Message):
    __slots__ = ("line",)
    LINE_FIELD_NUMBER: _ClassVar[int]
    line: LogLine
    def __init__(self, line: _Optional[_Union[LogLine, _Mapping]] = ...) -> None: ...
