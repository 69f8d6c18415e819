"""Inline steps (CHORDAL_INLINE_STEPS) on the chain row of bench/run.py: per-step cost of
a chain with inline steps off and on, against raw Celery, on the same broker and worker.

Two chains: bench/run.py's own (every step an ``echo`` with its 300 s time limit), and
the same chain whose head step has a 3,600 s limit. With inline steps on, each step's own
time limits are armed by the worker (workers/deadline.py), so both chains run up to
CHORDAL_INLINE_MAX steps in a task (before, a prefork task ran a step inline only when its
own limit left the step's whole timeout, so only the second one did).
Usage: python bench/inline.py [--n 20] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import sides
from bench.measure import per_step_ms, ratio
from bench.run import medians, paired, session


def long_head(n: int) -> dict[str, Any]:
    plan = sides.chain_plan(n)
    plan["steps"][0]["timeout_s"] = 3_600
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("BENCH_REDIS_URL",
                                                        "redis://127.0.0.1:6379") + "/12")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    for inline in ("0", "1"):
        with session(args.url, telemetry=False, CHORDAL_INLINE_STEPS=inline) as client:
            for name, make in (("echo chain", sides.chain_plan), ("long head", long_head)):
                c, r = paired(lambda make=make: sides.chordal(client, make(args.n)),  # type: ignore[misc]
                              lambda: sides.raw_chain(client, args.n), args.reps)
                (cw, _), (rw, _) = medians(c), medians(r)
                print(f"inline={inline} {name:10} {args.n}-step: chordal "
                      f"{per_step_ms(cw, args.n):.2f} ms/step, raw "
                      f"{per_step_ms(rw, args.n):.2f} ms/step, {ratio(cw, rw):.2f}x")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # as bench/run.py: the raw side's AsyncResults fail noisily at teardown
