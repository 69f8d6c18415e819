"""The run page: ``/`` (recent runs) and ``/runs/{id}``, static files shipped as package
data (``planner/service/page/``), fed by the API with the key the user enters."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
