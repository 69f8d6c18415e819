"""The run store: runs, steps, outputs and an event log per run, in Redis.

Every transition is one Lua script, so it is atomic across workers: a step is marked
finished once, and a late duplicate cannot overwrite it. Times come from Redis's own
clock (``TIME``), one clock for every worker, so "b started after a finished" holds across
machines. A run's keys share a hash tag (``{run_id}``), so its scripts touch one slot.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import redis

from planner.errors import ConfigError, RunNotFound
from planner.plan import Plan

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped"]
TERMINAL_RUN = ("succeeded", "failed", "cancelled")
EVENTS_MAXLEN = 100_000

_LUA_NOW = """
local function now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
local function event(stream, kind, step, status, data)
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV_MAXLEN, '*', 'type', kind, 'step', step,
             'status', status, 'ts', now(), 'data', data)
end
"""

# KEYS: run, steps, events.  ARGV: step, version, worker, max_attempts
_BEGIN = _LUA_NOW + """
local step, version, worker, max_attempts = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local run = redis.call('HMGET', KEYS[1], 'status', 'version')
if run[1] ~= 'running' or run[2] ~= version then return {'inactive', run[1] or 'missing'} end
local status = redis.call('HGET', KEYS[2], step .. '.status')
if status == 'succeeded' or status == 'skipped' or status == 'failed' then
  return {'done', status}
end
local attempts = redis.call('HINCRBY', KEYS[2], step .. '.attempts', 1)
if attempts > max_attempts then return {'exhausted', tostring(attempts - 1)} end
redis.call('HSET', KEYS[2], step .. '.status', 'running', step .. '.worker', worker,
           step .. '.attempt_started_at', now())
redis.call('HSETNX', KEYS[2], step .. '.started_at', now())
event(KEYS[3], 'step.started', step, 'running', tostring(attempts))
return {'run', tostring(attempts)}
"""

# KEYS: run, steps, events, outputs, deps.
# ARGV: step, status (succeeded|skipped), output json ('' for none), error json ('' none),
#       worker, ttl, dependents...
_FINISH = _LUA_NOW + """
local step, status, output, err, worker, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
                                               tonumber(ARGV[6])
local current = redis.call('HGET', KEYS[2], step .. '.status')
if current == 'succeeded' or current == 'skipped' or current == 'failed' then
  return {'duplicate'}
end
redis.call('HSET', KEYS[2], step .. '.status', status, step .. '.finished_at', now(),
           step .. '.worker', worker)
if err ~= '' then redis.call('HSET', KEYS[2], step .. '.error', err) end
redis.call('HSET', KEYS[4], step, output)
if redis.call('TTL', KEYS[4]) < 0 then redis.call('EXPIRE', KEYS[4], ttl) end
event(KEYS[3], 'step.finished', step, status, err)
local result = {'ok', ''}
for i = 7, #ARGV do
  if redis.call('HINCRBY', KEYS[5], ARGV[i], -1) == 0 then table.insert(result, ARGV[i]) end
end
local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return {'inactive'} end
result[2] = tostring(remaining)
return result
"""

# KEYS: run, steps, events.  ARGV: step, error json, worker
_FAIL = _LUA_NOW + """
local current = redis.call('HGET', KEYS[2], ARGV[1] .. '.status')
if current == 'succeeded' or current == 'skipped' or current == 'failed' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1] .. '.status', 'failed', ARGV[1] .. '.finished_at', now(),
           ARGV[1] .. '.error', ARGV[2], ARGV[1] .. '.worker', ARGV[3])
event(KEYS[3], 'step.finished', ARGV[1], 'failed', ARGV[2])
return 1
"""

# KEYS: steps, events.  ARGV: step, error json, delay
_RETRY = _LUA_NOW + """
local current = redis.call('HGET', KEYS[1], ARGV[1] .. '.status')
if current == 'succeeded' or current == 'skipped' or current == 'failed' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1] .. '.status', 'pending', ARGV[1] .. '.error', ARGV[2])
event(KEYS[2], 'step.retrying', ARGV[1], 'pending', ARGV[2])
return 1
"""

# KEYS: run, events.  ARGV: status, answer json, error json
_FINISH_RUN = _LUA_NOW + """
local current = redis.call('HGET', KEYS[1], 'status')
if current ~= 'running' and current ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', now(), 'answer', ARGV[2],
           'error', ARGV[3])
event(KEYS[2], 'run.finished', '', ARGV[1], ARGV[3])
return 1
"""

# KEYS: run, events.  ARGV: none
_START_RUN = _LUA_NOW + """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running')
event(KEYS[2], 'run.started', '', 'running', '')
return 1
"""


def _script(body: str) -> str:
    return body.replace("ARGV_MAXLEN", str(EVENTS_MAXLEN))


def rfc3339(stamp: str | None) -> str | None:
    """Redis ``TIME`` as stored ("secs.micros") to RFC 3339, UTC, with microseconds."""
    if not stamp:
        return None
    secs, _, micros = stamp.partition(".")
    moment = datetime.fromtimestamp(int(secs), UTC).replace(microsecond=int(micros or 0))
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def epoch(stamp: str | None) -> float | None:
    return float(stamp) if stamp else None


@dataclass(frozen=True)
class Begin:
    """What ``begin_step`` decided: run the tool, or why not."""

    state: Literal["run", "done", "inactive", "exhausted"]
    detail: str

    @property
    def attempt(self) -> int:
        return int(self.detail)


@dataclass(frozen=True)
class Finish:
    """What ``finish_step`` decided: ``duplicate`` (already finished: do nothing),
    ``inactive`` (the run is over), or ``ok`` with the dependents now ready."""

    state: Literal["ok", "duplicate", "inactive"]
    remaining: int = -1
    ready: tuple[str, ...] = ()


@dataclass(frozen=True)
class Keys:
    run_id: str

    def _k(self, suffix: str) -> str:
        return f"chordal:run:{{{self.run_id}}}{suffix}"

    @property
    def run(self) -> str:
        return self._k("")

    @property
    def steps(self) -> str:
        return self._k(":steps")

    @property
    def outputs(self) -> str:
        return self._k(":outputs")

    @property
    def deps(self) -> str:
        return self._k(":deps")

    @property
    def plans(self) -> str:
        return self._k(":plans")

    @property
    def events(self) -> str:
        return self._k(":events")

    @property
    def claims(self) -> str:
        return self._k(":claims")

    @property
    def usage(self) -> str:
        return self._k(":usage")

    def all(self) -> list[str]:
        return [self.run, self.steps, self.outputs, self.deps, self.plans, self.events,
                self.claims, self.usage]


INDEX_KEY = "chordal:runs"


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


class RunStore:
    """Runs in Redis. Safe to share between threads (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, retention_s: int = 7 * 86_400) -> None:
        self.r = client
        self.retention_s = retention_s
        self._begin = client.register_script(_script(_BEGIN))
        self._finish = client.register_script(_script(_FINISH))
        self._fail = client.register_script(_script(_FAIL))
        self._retry = client.register_script(_script(_RETRY))
        self._finish_run = client.register_script(_script(_FINISH_RUN))
        self._start_run = client.register_script(_script(_START_RUN))

    @classmethod
    def from_url(cls, url: str, retention_s: int = 7 * 86_400) -> RunStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30),
                   retention_s)

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, goal: str, plan: Plan | None = None,
                   deps: Mapping[str, Iterable[str]] | None = None, run_id: str | None = None,
                   options: Mapping[str, Any] | None = None) -> str:
        """Record a new run (status ``pending``), with plan version 1 if it has a plan yet
        (a goal is planned by the model first). ``options`` are per-run overrides."""
        run_id = run_id or new_run_id()
        k = Keys(run_id)
        if not self.r.hsetnx(k.run, "id", run_id):
            raise ConfigError(f"run id {run_id!r} is taken; choose another (or none)")
        now = self.r.time()
        stamp = f"{now[0]}.{now[1]:06d}"
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(k.run, mapping={
            "goal": goal, "status": "pending", "version": "0", "created_at": stamp,
            "remaining": "0", "answer": "", "error": "",
            "options": json.dumps(dict(options or {})),
        })
        pipe.xadd(k.events, {"type": "run.created", "step": "", "status": "pending",
                             "ts": stamp, "data": ""}, maxlen=EVENTS_MAXLEN, approximate=True)
        for key in (k.run, k.events):
            pipe.expire(key, self.retention_s)
        pipe.execute()
        # The index is a key of its own (not in the run's hash slot): written apart.
        self.r.zadd(INDEX_KEY, {run_id: float(stamp)})
        self.r.zremrangebyscore(INDEX_KEY, 0, float(now[0]) - self.retention_s)
        if plan is not None:
            self.add_plan(run_id, 1, plan, deps if deps is not None else plan.dependencies())
        return run_id

    def add_plan(self, run_id: str, version: int, plan: Plan,
                 deps: Mapping[str, Iterable[str]]) -> bool:
        """Make ``plan`` the run's current version, once (False if this version exists):
        its steps start pending, their dependency counters full. Steps already finished
        keep their state and outputs."""
        k = Keys(run_id)
        with self.r.pipeline(transaction=True) as pipe:
            # All or nothing, once: a crash cannot leave a plan without its steps' state.
            pipe.watch(k.plans)  # type: ignore[no-untyped-call]
            if pipe.hexists(k.plans, str(version)):
                return False
            states = self.step_states(run_id)
            finished = {s for s, st in states.items()
                        if st.get("status") in ("succeeded", "skipped", "failed")}
            fields: dict[Any, Any] = {}
            for step in plan.steps:
                if step.id not in finished:
                    fields[f"{step.id}.status"] = "pending"
                    fields[f"{step.id}.attempts"] = "0"
            pipe.multi()
            pipe.hset(k.plans, str(version), plan.model_dump_json())
            if fields:
                pipe.hset(k.steps, mapping=fields)
            pipe.hset(k.deps, mapping={
                sid: str(len([u for u in ups if u not in finished]))
                for sid, ups in deps.items()})
            pipe.hset(k.run, mapping={"version": str(version),
                                      "remaining": str(len(plan.steps) - len(
                                          finished & {s.id for s in plan.steps}))})
            for key in k.all():
                pipe.expire(key, self.retention_s)
            try:
                pipe.execute()
            except redis.WatchError:
                return False  # another worker added this version meanwhile
        return True

    def start_run(self, run_id: str) -> bool:
        k = Keys(run_id)
        return bool(self._start_run(keys=[k.run, k.events]))

    def finish_run(self, run_id: str, status: RunStatus, answer: Any = None,
                   error: Mapping[str, Any] | None = None) -> bool:
        """Move a pending or running run to a final status, once; re-arm retention."""
        k = Keys(run_id)
        done = bool(self._finish_run(keys=[k.run, k.events], args=[
            status, "" if answer is None else json.dumps(answer),
            json.dumps(error) if error else ""]))
        if done:
            pipe = self.r.pipeline(transaction=False)
            for key in k.all():
                pipe.expire(key, self.retention_s)
            pipe.execute()
        return done

    def cancel(self, run_id: str) -> bool:
        self.run_fields(run_id)  # RunNotFound if it does not exist
        return self.finish_run(run_id, "cancelled", error={"type": "Cancelled",
                                                            "message": "cancelled by a user"})

    def run_fields(self, run_id: str) -> dict[str, str]:
        fields = cast(dict[str, str], self.r.hgetall(Keys(run_id).run))
        if not fields:
            raise RunNotFound(f"no run {run_id!r} (it may have expired after "
                              f"{self.retention_s // 86_400} days)")
        return fields

    def plan(self, run_id: str, version: int) -> Plan:
        text = cast(str | None, self.r.hget(Keys(run_id).plans, str(version)))
        if text is None:
            raise RunNotFound(f"run {run_id!r} has no plan version {version}")
        return Plan.model_validate_json(text)

    # -- steps ---------------------------------------------------------------------------
    def begin_step(self, run_id: str, step_id: str, version: int, worker: str,
                   max_attempts: int) -> Begin:
        k = Keys(run_id)
        state, detail = self._begin(keys=[k.run, k.steps, k.events],
                                    args=[step_id, str(version), worker, str(max_attempts)])
        return Begin(state, detail or "")

    def finish_step(self, run_id: str, step_id: str, *, output: Any, worker: str,
                    dependents: Sequence[str], skipped_error: Mapping[str, Any] | None = None
                    ) -> Finish:
        """Record a success (or, with ``skipped_error``, a skip) and count down dependents."""
        k = Keys(run_id)
        status = "skipped" if skipped_error is not None else "succeeded"
        reply = self._finish(
            keys=[k.run, k.steps, k.events, k.outputs, k.deps],
            args=[step_id, status, json.dumps(output),
                  json.dumps(skipped_error) if skipped_error else "", worker,
                  str(self.retention_s), *dependents])
        if reply[0] != "ok":
            return Finish(reply[0])
        return Finish("ok", int(reply[1]), tuple(reply[2:]))

    def fail_step(self, run_id: str, step_id: str, error: Mapping[str, Any],
                  worker: str) -> bool:
        k = Keys(run_id)
        return bool(self._fail(keys=[k.run, k.steps, k.events],
                               args=[step_id, json.dumps(error), worker]))

    def record_usage(self, run_id: str, role: str, model: str, step_id: str | None,
                     counts: Mapping[str, int | float]) -> None:
        """Add one model call's tokens and latency to the run's counters."""
        k = Keys(run_id)
        prefix = f"{role}|{model.replace('|', '/')}|{step_id or ''}|"
        pipe = self.r.pipeline(transaction=True)
        for metric, value in counts.items():
            pipe.hincrby(k.usage, prefix + metric, int(value))
        pipe.expire(k.usage, self.retention_s)
        pipe.execute()

    def usage_fields(self, run_id: str) -> dict[str, str]:
        return cast(dict[str, str], self.r.hgetall(Keys(run_id).usage))

    def options(self, run_id: str) -> dict[str, Any]:
        raw = cast(str | None, self.r.hget(Keys(run_id).run, "options"))
        return cast(dict[str, Any], json.loads(raw)) if raw else {}

    def claim(self, run_id: str, name: str, holder: str) -> bool:
        """Claim ``name`` for this run once (e.g. ``replan:1``): the first caller wins, so a
        callback that fires twice acts once."""
        k = Keys(run_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(k.claims, name, holder)
        pipe.expire(k.claims, self.retention_s)
        return bool(pipe.execute()[0])

    def record_retry(self, run_id: str, step_id: str, error: Mapping[str, Any]) -> bool:
        """Record a failed attempt that will be retried; False if the step is already
        final (a duplicate attempt failed after another one finished it: do not retry)."""
        k = Keys(run_id)
        return bool(self._retry(keys=[k.steps, k.events], args=[step_id, json.dumps(error)]))

    def mark_dispatched(self, run_id: str, step_ids: Sequence[str]) -> None:
        """Note that these steps' messages were published (so recovery does not publish
        them again)."""
        if step_ids:
            self.r.hset(Keys(run_id).steps,
                        mapping={f"{s}.dispatched": "1" for s in step_ids})

    def outputs(self, run_id: str, step_ids: Iterable[str]) -> dict[str, Any]:
        ids = sorted(set(step_ids))
        if not ids:
            return {}
        values = cast(list[str | None], self.r.hmget(Keys(run_id).outputs, ids))
        return {sid: json.loads(v) for sid, v in zip(ids, values, strict=True)
                if v is not None}

    def ready_unstarted(self, run_id: str, step_ids: Sequence[str]) -> list[str]:
        """Of ``step_ids``, those whose dependencies are all finished, that never started
        and whose message was never published (recovery after a worker died between
        finishing a step and publishing what it unlocked)."""
        if not step_ids:
            return []
        k = Keys(run_id)
        counts = cast(list[str | None], self.r.hmget(k.deps, list(step_ids)))
        fields = [f"{s}.{name}" for s in step_ids for name in ("status", "dispatched")]
        values = cast(list[str | None], self.r.hmget(k.steps, fields))
        return [s for i, (s, n) in enumerate(zip(step_ids, counts, strict=True))
                if n == "0" and values[2 * i] == "pending" and values[2 * i + 1] != "1"]

    # -- reading -------------------------------------------------------------------------
    def step_states(self, run_id: str) -> dict[str, dict[str, Any]]:
        raw = cast(dict[str, str], self.r.hgetall(Keys(run_id).steps))
        states: dict[str, dict[str, str]] = {}
        for field, value in raw.items():
            sid, _, name = field.rpartition(".")
            states.setdefault(sid, {})[name] = value
        return states

    def events(self, run_id: str, after: str = "0-0", block_ms: int | None = None,
               count: int = 1_000) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.r.xread({Keys(run_id).events: after}, count=count, block=block_ms)
        if not reply:
            return []
        return cast(list[tuple[str, dict[str, str]]], reply[0][1])

    def report(self, run_id: str) -> dict[str, Any]:
        """The run report: ``{run_id, status, goal, answer, error, ..., steps: {...}}``."""
        run = self.run_fields(run_id)
        version = int(run.get("version", "0"))
        plan = self.plan(run_id, version) if version else None
        states = self.step_states(run_id)
        step_ids = [s.id for s in plan.steps] if plan else []
        outputs = self.outputs(run_id, step_ids)
        steps: dict[str, Any] = {}
        for sid in step_ids:
            st = states.get(sid, {})
            steps[sid] = {
                "status": st.get("status", "pending"),
                "output": outputs.get(sid),
                "error": json.loads(st["error"]) if st.get("error") else None,
                "attempts": int(st.get("attempts", "0")),
                "started_at": rfc3339(st.get("started_at")),
                "finished_at": rfc3339(st.get("finished_at")),
                "worker": st.get("worker"),
            }
        return {
            "run_id": run_id,
            "status": run.get("status"),
            "goal": run.get("goal"),
            "answer": json.loads(run["answer"]) if run.get("answer") else None,
            "error": json.loads(run["error"]) if run.get("error") else None,
            "plan_version": version,
            "created_at": rfc3339(run.get("created_at")),
            "finished_at": rfc3339(run.get("finished_at")),
            "steps": steps,
            "plan": plan.model_dump(mode="json") if plan else None,
        }

    def step_times(self, run_id: str) -> dict[str, tuple[float | None, float | None]]:
        """``(started, finished)`` epoch seconds per step, for tests and benchmarks."""
        return {sid: (epoch(st.get("started_at")), epoch(st.get("finished_at")))
                for sid, st in self.step_states(run_id).items()}
