"""``/v1/runs``: create, list, read and act on runs, each the Client's operation on the
caller's own runs.

Operations are plain ``def``: the Client's calls block on Redis and the broker, so FastAPI
runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from planner import tracing
from planner.errors import Conflict, InvalidInput
from planner.language.plan import Plan
from planner.net import check_callback_url
from planner.service.auth import Caller, caller
from planner.service.idempotency import MAX_KEY_CHARS, body_hash
from planner.service.schemas import (
    CURSOR,
    ApproveRun,
    CreateRun,
    Links,
    RejectRun,
    ResumeRun,
    RetryReply,
    RetryRun,
    RunCreated,
    RunList,
    RunStatusReply,
    error_responses,
    run_links,
)
from planner.service.state import Service, service
from planner.store.lost import new_run_id
from planner.store.records import RunReport, RunStatus

router = APIRouter(prefix="/v1", tags=["runs"])

RunId = Annotated[str, Path(min_length=1, max_length=128, description="A run's id.")]
Who = Annotated[Caller, Depends(caller)]
Svc = Annotated[Service, Depends(service)]
#: Every operation on one run.
ON_RUN = error_responses(401, 404, 422, 503)


def links(run_id: str) -> Links:
    return Links(self=f"/v1/runs/{run_id}", events=f"/v1/runs/{run_id}/events",
                 page=f"/runs/{run_id}")


def created(svc: Service, run_id: str) -> RunCreated:
    status = svc.client.store.run_state(run_id).status
    return RunCreated(run_id=run_id, status=status, links=links(run_id))


#: What a client does next with a run it made (FastAPI's operationIds).
NEXT = run_links({
    "GetRun": "get_run_v1_runs__run_id__get",
    "GetEvents": "run_events_v1_runs__run_id__events_get",
    "CancelRun": "cancel_run_v1_runs__run_id__cancel_post",
    "ApproveRun": "approve_run_v1_runs__run_id__approve_post",
    "RejectRun": "reject_run_v1_runs__run_id__reject_post",
    "ResumeRun": "resume_run_v1_runs__run_id__resume_post",
    "RetryRun": "retry_run_v1_runs__run_id__retry_post",
    "GetPlan": "get_plan_v1_runs__run_id__plans__version__get"})


@router.post("/runs", status_code=201, response_model=RunCreated,
             responses={201: {"links": NEXT},
                        200: {"model": RunCreated, "description": "The run this "
                              "Idempotency-Key made before", "links": NEXT},
                        **error_responses(400, 401, 409, 413, 422, 429, 503)})
def create_run(body: CreateRun, request: Request, response: Response, who: Who, svc: Svc,
               idempotency_key: Annotated[str | None, Header(
                   alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_CHARS,
                   description="Retry-safe creation: the same key and body answer with "
                               "the same run (200).")] = None) -> RunCreated:
    """Start a run from a goal (planned by the model) or a plan."""
    if (body.goal is None) == (body.plan is None):
        raise InvalidInput("goal, plan: give exactly one of them (a goal for the planner "
                           "model, or a plan)")
    if body.callback_url is not None:
        check_callback_url(body.callback_url, svc.client.settings.callbacks.callback_allow)
    if body.goal is not None and not svc.has_model:
        # The request is fine and so is the server: it cannot plan until set up, and no
        # retry changes that (a 503 would invite retries).
        raise InvalidInput("goal: this server has no model to plan goals with; set "
                           "ANTHROPIC_API_KEY (or CHORDAL_LLM=scripted:PATH) where it and "
                           "the workers run, or submit a plan instead")
    # The caller's trace is its traceparent's (not the request's own span, a root without
    # one: such a run keeps its own trace and an ordinary id, as the CLI's).
    run_id = tracing.joined_run_id(new_run_id(), request.headers)
    reservation = None
    if idempotency_key is not None:
        digest = body_hash(body.model_dump(mode="json"))
        reservation = svc.idempotency.reserve(who.scope, idempotency_key, digest, run_id,
                                              exists=svc.client.store.exists)
        if reservation.replay:
            svc.owned(reservation.run_id, who)
            response.status_code = 200
            return created(svc, reservation.run_id)
    try:
        svc.take_create_slot(who, take=False)
        _submit(svc, body, who, run_id)
    except BaseException:
        if reservation is not None:
            # A run that was made (and, say, failed to publish) is the key's answer from now
            # on: a retry must not make another. A create that made nothing frees the key.
            if svc.client.store.exists(run_id):
                svc.idempotency.complete(reservation, digest)
            else:
                svc.idempotency.release(reservation)
        raise
    if reservation is not None:
        svc.idempotency.complete(reservation, digest)
    return created(svc, run_id)


def _submit(svc: Service, body: CreateRun, who: Caller, run_id: str) -> None:
    options = body.options(owner=who.name)
    # The rate limit counts runs made: a plan that cannot run costs its tenant nothing.
    if body.plan is not None:
        compiled = svc.client.compile(body.plan)
        svc.take_create_slot(who)
        svc.client.submit(compiled, options, run_id=run_id)
    else:
        assert body.goal is not None
        svc.client.check_goal(body.goal)
        svc.take_create_slot(who)
        svc.client.submit_goal(body.goal, options, run_id=run_id)


@router.get("/runs", response_model=RunList, responses=error_responses(401, 422, 503))
def list_runs(who: Who, svc: Svc,
              status: Annotated[RunStatus | None, Query(description="Only runs in this "
                                                                    "status.")] = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 20,
              cursor: Annotated[str | None, Query(max_length=200, pattern=CURSOR,
                                                  description="next_cursor of the page "
                                                              "before.")] = None,
              ) -> RunList:
    """The caller's runs (an admin key's: every run), newest first, a page at a time."""
    after = _parse_cursor(cursor) if cursor is not None else None
    runs, nxt = svc.client.store.runs_page(who.listed, status, limit, after)
    return RunList(runs=runs, next_cursor=None if nxt is None else f"{nxt[0]!r}:{nxt[1]}")


def _parse_cursor(cursor: str) -> tuple[float, str]:
    score, sep, run_id = cursor.partition(":")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not sep or not run_id or not math.isfinite(value):
        raise InvalidInput("cursor: not a cursor this API gave (pass next_cursor as is)")
    return value, run_id


@router.get("/runs/{run_id}", response_model=RunReport, responses=ON_RUN)
def get_run(run_id: RunId, who: Who, svc: Svc) -> RunReport:
    """The run report, with usage (as `chordal status --json`)."""
    svc.owned(run_id, who)
    return svc.client.report(run_id)


@router.get("/runs/{run_id}/plans/{version}", response_model=Plan, responses=ON_RUN)
def get_plan(run_id: RunId, who: Who, svc: Svc,
             version: Annotated[int, Path(ge=1, le=1_000_000, description="A plan version "
                                                                          "(1 = the first)."
                                          )]) -> Plan:
    """One plan version of the run, as installed (the report holds only the current one):
    what a replan dropped, with its dependencies."""
    svc.owned(run_id, who)
    return svc.client.store.plan(run_id, version)


def _status(svc: Service, run_id: str) -> RunStatusReply:
    return RunStatusReply(run_id=run_id, status=svc.client.store.run_state(run_id).status)


ACTS = {**ON_RUN, **error_responses(409)}


@router.post("/runs/{run_id}/cancel", response_model=RunStatusReply, responses=ACTS)
def cancel_run(run_id: RunId, who: Who, svc: Svc) -> RunStatusReply:
    """End the run cancelled; 409 if it had ended."""
    svc.owned(run_id, who)
    if not svc.client.cancel(run_id):
        status = svc.client.store.run_state(run_id).status
        raise Conflict(f"run {run_id!r} had already ended ({status})")
    return _status(svc, run_id)


@router.post("/runs/{run_id}/approve", response_model=RunStatusReply,
             responses={**ACTS, **error_responses(400, 413)})
def approve_run(run_id: RunId, who: Who, svc: Svc,
                body: ApproveRun | None = None) -> RunStatusReply:
    """Start a run that awaits approval, optionally with an edited plan."""
    svc.owned(run_id, who)
    svc.client.approve(run_id, body.plan if body is not None else None)
    return _status(svc, run_id)


@router.post("/runs/{run_id}/reject", response_model=RunStatusReply,
             responses={**ACTS, **error_responses(400, 413)})
def reject_run(run_id: RunId, who: Who, svc: Svc,
               body: RejectRun | None = None) -> RunStatusReply:
    """End a run that awaits approval, cancelled."""
    svc.owned(run_id, who)
    svc.client.reject(run_id, body.reason if body is not None else None)
    return _status(svc, run_id)


@router.post("/runs/{run_id}/resume", response_model=RunStatusReply,
             responses={**ACTS, **error_responses(400, 413)})
def resume_run(run_id: RunId, who: Who, svc: Svc,
               body: ResumeRun | None = None) -> RunStatusReply:
    """Go on with a run paused at its budget, with a new budget."""
    svc.owned(run_id, who)
    new = body or ResumeRun()
    svc.client.resume(run_id, new.budget_tokens, new.budget_usd)
    return _status(svc, run_id)


@router.post("/runs/{run_id}/retry", response_model=RetryReply,
             responses={**ACTS, **error_responses(400, 413)})
def retry_run(run_id: RunId, who: Who, svc: Svc,
              body: RetryRun | None = None) -> RetryReply:
    """Re-drive a failed or cancelled run from where it stopped."""
    svc.owned(run_id, who)
    steps = svc.client.retry(run_id, body.step if body is not None else None)
    status = svc.client.store.run_state(run_id).status
    return RetryReply(run_id=run_id, status=status, steps=steps)
