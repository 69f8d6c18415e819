"""Records that leave their unset details out of the JSON (ErrorRecord, Attempt): the
serialized forms, byte for byte, as reports and the run store have always written them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from planner.store.records import Attempt, ErrorRecord
from planner.vocabulary import AttemptStatus

CAUSE = ErrorRecord(type="ValueError", message="bad", transient=False, attempt=2)
ERROR = ErrorRecord(type="StepFailed", message="gave up", step="s", cause=CAUSE,
                    problems=["p"], retry_in_s=None, extra_detail={"k": None}, gone=None)
AT = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)


def test_an_error_record_leaves_out_what_is_none_extras_included():
    assert ERROR.to_json() == (
        '{"type": "StepFailed", "message": "gave up", "step": "s", "cause": {"type": '
        '"ValueError", "message": "bad", "transient": false, "attempt": 2}, "problems": '
        '["p"], "extra_detail": {"k": null}}')
    assert ERROR.model_dump_json() == json.dumps(
        json.loads(ERROR.to_json()), separators=(",", ":"))
    parsed = ErrorRecord.parse(ERROR.to_json())
    assert parsed is not None and parsed.to_json() == ERROR.to_json()


def test_an_attempt_leaves_out_what_is_none():
    bare = Attempt(attempt=1)
    assert bare.model_dump_json() == '{"attempt":1,"status":"running"}'
    full = Attempt(attempt=2, status=AttemptStatus.FAILED, worker="w", started_at=AT,
                   finished_at=AT, error=CAUSE, task="t")
    assert full.model_dump_json() == (
        '{"attempt":2,"status":"failed","worker":"w","started_at":'
        '"2026-01-02T03:04:05.600000Z","finished_at":"2026-01-02T03:04:05.600000Z",'
        '"error":{"type":"ValueError","message":"bad","transient":false,"attempt":2},'
        '"task":"t"}')
    assert full.model_dump(mode="python")["error"] == {
        "type": "ValueError", "message": "bad", "transient": False, "attempt": 2}


def test_their_schemas_are_as_before():
    # A wrap serializer typed ``Any``: no serialization schema of their own (StepReport
    # says so where it holds them); validation schemas list every field.
    for model in (ErrorRecord, Attempt):
        assert model.model_json_schema(mode="serialization") == {}
    error_schema = ErrorRecord.model_json_schema()["$defs"]["ErrorRecord"]  # recursive
    assert set(error_schema["properties"]) >= {
        "type", "message", "cause", "traceback"}
    assert set(Attempt.model_json_schema()["properties"]) == {
        "attempt", "status", "worker", "started_at", "finished_at", "error", "outcome",
        "task"}
