"""The reconciler's sweep of the run index for runs it does not watch (made before the
watch list existed): a batch per pass, by a cursor, so a pass costs the same however many
runs the index holds; and none is missed, however many share a creation time."""

from __future__ import annotations

import time

from planner.engine import reconcile
from planner.engine.reconcile import Reconciler
from planner.store.keys import ACTIVE_RUNS, RUN_INDEX, RunKeys
from tests.engine.conftest import MakeRuntime, echo, record


def test_the_sweep_watches_unwatched_runs_a_batch_per_pass(make_rt: MakeRuntime,
                                                           monkeypatch) -> None:
    rt = make_rt()
    r = rt.store.r
    monkeypatch.setattr(reconcile, "SWEEP_BATCH", 10)
    lost = [record(rt, echo("a")) for _ in range(3)]
    # 25 ended runs, several created in the same millisecond as the unwatched ones (an
    # hour ago: within the retention, which creating a run trims the index to)
    base = time.time() - 3_600
    for i in range(25):
        r.zadd(RUN_INDEX, {f"old{i:02}": base + i // 8})
        r.hset(RunKeys(f"old{i:02}").run, "status", "succeeded")
    for n, run_id in enumerate(lost):
        r.zrem(ACTIVE_RUNS, run_id)  # as a run made before the watch list existed
        r.zadd(RUN_INDEX, {run_id: base + 1 + n})
    rec = Reconciler(rt, lock_s=60, settle_s=0)
    watched = []
    for _ in range(4):  # 28 entries, 10 a pass: through in 3
        rec.tick()
        watched.append(sorted(set(lost) & set(r.zrange(ACTIVE_RUNS, 0, -1))))
    assert watched[0] == sorted(lost[:1])  # only the first batch was read
    assert watched[-1] == sorted(lost)
    assert not rec._sweeping  # through: the next passes read no index at all


def test_a_cursor_reads_past_more_runs_of_one_millisecond_than_a_batch(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    r = rt.store.r
    for i in range(7):
        r.zadd(RUN_INDEX, {f"same{i}": 5.0})
    seen: list[str] = []
    cursor = None
    while True:
        _, nxt = rt.store.unwatched_runs(cursor, batch=3)
        page = [m for m, t in r.zrangebyscore(RUN_INDEX, "-inf", "+inf", withscores=True)
                if cursor is None or (t, m) > cursor]
        if nxt is None:
            seen.extend(page)
            break
        seen.extend(m for m in page if (5.0, m) <= nxt)
        cursor = nxt
    assert seen == [f"same{i}" for i in range(7)]
