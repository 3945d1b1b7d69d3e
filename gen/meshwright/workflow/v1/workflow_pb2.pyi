import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from meshwright.mesh.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKFLOW_STATE_UNSPECIFIED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_PENDING: _ClassVar[WorkflowState]
    WORKFLOW_STATE_RUNNING: _ClassVar[WorkflowState]
    WORKFLOW_STATE_SUCCEEDED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_FAILED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_CANCELLED: _ClassVar[WorkflowState]

class TaskRunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_RUN_STATE_UNSPECIFIED: _ClassVar[TaskRunState]
    TASK_RUN_STATE_PENDING: _ClassVar[TaskRunState]
    TASK_RUN_STATE_READY: _ClassVar[TaskRunState]
    TASK_RUN_STATE_RUNNING: _ClassVar[TaskRunState]
    TASK_RUN_STATE_SUCCEEDED: _ClassVar[TaskRunState]
    TASK_RUN_STATE_FAILED: _ClassVar[TaskRunState]
    TASK_RUN_STATE_SKIPPED: _ClassVar[TaskRunState]
    TASK_RUN_STATE_CANCELLED: _ClassVar[TaskRunState]

class WorkflowEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKFLOW_EVENT_TYPE_UNSPECIFIED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_TASK_STARTED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_TASK_RETRYING: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_TASK_FAILED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_TASK_PROGRESS: _ClassVar[WorkflowEventType]

class SpanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPAN_KIND_UNSPECIFIED: _ClassVar[SpanKind]
    SPAN_KIND_INTERNAL: _ClassVar[SpanKind]
    SPAN_KIND_SERVER: _ClassVar[SpanKind]
    SPAN_KIND_CLIENT: _ClassVar[SpanKind]
WORKFLOW_STATE_UNSPECIFIED: WorkflowState
WORKFLOW_STATE_PENDING: WorkflowState
WORKFLOW_STATE_RUNNING: WorkflowState
WORKFLOW_STATE_SUCCEEDED: WorkflowState
WORKFLOW_STATE_FAILED: WorkflowState
WORKFLOW_STATE_CANCELLED: WorkflowState
TASK_RUN_STATE_UNSPECIFIED: TaskRunState
TASK_RUN_STATE_PENDING: TaskRunState
TASK_RUN_STATE_READY: TaskRunState
TASK_RUN_STATE_RUNNING: TaskRunState
TASK_RUN_STATE_SUCCEEDED: TaskRunState
TASK_RUN_STATE_FAILED: TaskRunState
TASK_RUN_STATE_SKIPPED: TaskRunState
TASK_RUN_STATE_CANCELLED: TaskRunState
WORKFLOW_EVENT_TYPE_UNSPECIFIED: WorkflowEventType
WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED: WorkflowEventType
WORKFLOW_EVENT_TYPE_TASK_STARTED: WorkflowEventType
WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED: WorkflowEventType
WORKFLOW_EVENT_TYPE_TASK_RETRYING: WorkflowEventType
WORKFLOW_EVENT_TYPE_TASK_FAILED: WorkflowEventType
WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED: WorkflowEventType
WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED: WorkflowEventType
WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED: WorkflowEventType
WORKFLOW_EVENT_TYPE_TASK_PROGRESS: WorkflowEventType
SPAN_KIND_UNSPECIFIED: SpanKind
SPAN_KIND_INTERNAL: SpanKind
SPAN_KIND_SERVER: SpanKind
SPAN_KIND_CLIENT: SpanKind

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff", "backoff_multiplier", "max_backoff", "non_retryable_reasons")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_REASONS_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff: _duration_pb2.Duration
    backoff_multiplier: float
    max_backoff: _duration_pb2.Duration
    non_retryable_reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_multiplier: _Optional[float] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., non_retryable_reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("id", "skill", "input", "depends_on", "retry", "timeout", "stream_progress")
    ID_FIELD_NUMBER: _ClassVar[int]
    SKILL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    STREAM_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    skill: str
    input: _struct_pb2.Struct
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    retry: RetryPolicy
    timeout: _duration_pb2.Duration
    stream_progress: bool
    def __init__(self, id: _Optional[str] = ..., skill: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., stream_progress: _Optional[bool] = ...) -> None: ...

class WorkflowDefinition(_message.Message):
    __slots__ = ("name", "tasks", "budget", "payer_account_id", "labels", "timeout")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    PAYER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSpec]
    budget: int
    payer_account_id: str
    labels: _containers.ScalarMap[str, str]
    timeout: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskSpec, _Mapping]]] = ..., budget: _Optional[int] = ..., payer_account_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TemplateParameter(_message.Message):
    __slots__ = ("name", "description", "default_value", "required")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    default_value: str
    required: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., default_value: _Optional[str] = ..., required: _Optional[bool] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("name", "description", "parameters", "definition", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _containers.RepeatedCompositeFieldContainer[TemplateParameter]
    definition: WorkflowDefinition
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[TemplateParameter, _Mapping]]] = ..., definition: _Optional[_Union[WorkflowDefinition, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TemplateInvocation(_message.Message):
    __slots__ = ("template_name", "parameters", "budget", "payer_account_id")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    PAYER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    template_name: str
    parameters: _containers.ScalarMap[str, str]
    budget: int
    payer_account_id: str
    def __init__(self, template_name: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., budget: _Optional[int] = ..., payer_account_id: _Optional[str] = ...) -> None: ...

class TaskRun(_message.Message):
    __slots__ = ("task_id", "skill", "state", "agent_id", "attempts", "output", "error", "cost", "start_time", "end_time")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SKILL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    skill: str
    state: TaskRunState
    agent_id: str
    attempts: int
    output: _struct_pb2.Struct
    error: str
    cost: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., skill: _Optional[str] = ..., state: _Optional[_Union[TaskRunState, str]] = ..., agent_id: _Optional[str] = ..., attempts: _Optional[int] = ..., output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[str] = ..., cost: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("workflow_id", "name", "state", "definition", "tasks", "escrow_id", "spent", "error", "template_name", "create_time", "end_time", "owner", "traceparent")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    ESCROW_ID_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    name: str
    state: WorkflowState
    definition: WorkflowDefinition
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRun]
    escrow_id: str
    spent: int
    error: str
    template_name: str
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    owner: str
    traceparent: str
    def __init__(self, workflow_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[WorkflowState, str]] = ..., definition: _Optional[_Union[WorkflowDefinition, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskRun, _Mapping]]] = ..., escrow_id: _Optional[str] = ..., spent: _Optional[int] = ..., error: _Optional[str] = ..., template_name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., traceparent: _Optional[str] = ...) -> None: ...

class WorkflowEvent(_message.Message):
    __slots__ = ("sequence", "workflow_id", "type", "time", "task_id", "agent_id", "attempt", "message", "output", "amount", "workflow_state", "progress")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    workflow_id: str
    type: WorkflowEventType
    time: _timestamp_pb2.Timestamp
    task_id: str
    agent_id: str
    attempt: int
    message: str
    output: _struct_pb2.Struct
    amount: int
    workflow_state: WorkflowState
    progress: float
    def __init__(self, sequence: _Optional[int] = ..., workflow_id: _Optional[str] = ..., type: _Optional[_Union[WorkflowEventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., amount: _Optional[int] = ..., workflow_state: _Optional[_Union[WorkflowState, str]] = ..., progress: _Optional[float] = ...) -> None: ...

class CreateWorkflowRequest(_message.Message):
    __slots__ = ("definition", "template", "workflow_id", "request_id")
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    definition: WorkflowDefinition
    template: TemplateInvocation
    workflow_id: str
    request_id: str
    def __init__(self, definition: _Optional[_Union[WorkflowDefinition, _Mapping]] = ..., template: _Optional[_Union[TemplateInvocation, _Mapping]] = ..., workflow_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class GetWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: WorkflowState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[WorkflowState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    next_page_token: str
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "reason")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    reason: str
    def __init__(self, workflow_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class WatchWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "after_sequence")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    after_sequence: int
    def __init__(self, workflow_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchWorkflowResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: WorkflowEvent
    def __init__(self, event: _Optional[_Union[WorkflowEvent, _Mapping]] = ...) -> None: ...

class CreateTemplateRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class CreateTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    next_page_token: str
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetWorkflowTraceRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class GetWorkflowTraceResponse(_message.Message):
    __slots__ = ("trace_id", "spans", "dropped_spans")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_SPANS_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    spans: _containers.RepeatedCompositeFieldContainer[TraceSpan]
    dropped_spans: int
    def __init__(self, trace_id: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[TraceSpan, _Mapping]]] = ..., dropped_spans: _Optional[int] = ...) -> None: ...

class TraceSpan(_message.Message):
    __slots__ = ("span_id", "parent_span_id", "name", "kind", "start_time", "end_time", "error", "status_message", "attributes", "service")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    span_id: str
    parent_span_id: str
    name: str
    kind: SpanKind
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    error: bool
    status_message: str
    attributes: _containers.ScalarMap[str, str]
    service: str
    def __init__(self, span_id: _Optional[str] = ..., parent_span_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[SpanKind, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[bool] = ..., status_message: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., service: _Optional[str] = ...) -> None: ...
