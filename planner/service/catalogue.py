"""``GET /v1/tools``: the tools this server validates plans against, with their schemas
(what ``chordal tools --json`` prints)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from planner.service.auth import Caller, caller
from planner.service.schemas import ToolInfo, ToolList, error_responses
from planner.service.state import Service, service

router = APIRouter(prefix="/v1", tags=["tools"])


@router.get("/tools", response_model=ToolList, responses=error_responses(401))
def tools(who: Annotated[Caller, Depends(caller)],
          svc: Annotated[Service, Depends(service)]) -> ToolList:
    """Every registered tool, with its input and output schemas."""
    del who  # authenticated, like every /v1 operation; the catalogue is the same for all
    return ToolList(tools=[ToolInfo.model_validate(t.describe())
                           for _, t in sorted(svc.client.tools.items())])
