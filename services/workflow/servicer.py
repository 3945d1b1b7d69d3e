"""WorkflowService over the engine: parse, call, build the response."""

from __future__ import annotations

from collections.abc import AsyncIterator

from meshwright.workflow.engine import Engine
from meshwright.workflow.trace import trace_of
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2


class WorkflowServicer:
    """Implements ``meshwright.workflow.v1.WorkflowService``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def CreateWorkflow(self, request: W.CreateWorkflowRequest) -> W.CreateWorkflowResponse:
        return W.CreateWorkflowResponse(workflow=await self.engine.create_workflow(request))

    async def GetWorkflow(self, request: W.GetWorkflowRequest) -> W.GetWorkflowResponse:
        return W.GetWorkflowResponse(workflow=await self.engine.get_workflow(request.workflow_id))

    async def GetWorkflowTrace(
        self, request: W.GetWorkflowTraceRequest
    ) -> W.GetWorkflowTraceResponse:
        return trace_of(await self.engine.get_workflow(request.workflow_id))

    async def ListWorkflows(self, request: W.ListWorkflowsRequest) -> W.ListWorkflowsResponse:
        items, token = await self.engine.list_workflows(
            state=request.state, size=request.page_size, token=request.page_token
        )
        return W.ListWorkflowsResponse(workflows=items, next_page_token=token)

    async def CancelWorkflow(self, request: W.CancelWorkflowRequest) -> W.CancelWorkflowResponse:
        wf = await self.engine.cancel_workflow(request.workflow_id, request.reason)
        return W.CancelWorkflowResponse(workflow=wf)

    async def WatchWorkflow(
        self, request: W.WatchWorkflowRequest
    ) -> AsyncIterator[W.WatchWorkflowResponse]:
        async for event in self.engine.watch(request.workflow_id, request.after_sequence):
            yield W.WatchWorkflowResponse(event=event)

    async def CreateTemplate(self, request: W.CreateTemplateRequest) -> W.CreateTemplateResponse:
        return W.CreateTemplateResponse(
            template=await self.engine.create_template(request.template)
        )

    async def ListTemplates(self, request: W.ListTemplatesRequest) -> W.ListTemplatesResponse:
        items, token = await self.engine.list_templates(
            size=request.page_size, token=request.page_token
        )
        return W.ListTemplatesResponse(templates=items, next_page_token=token)
