"""A step's own time limits, armed by the worker (workers/deadline.py): the soft stop
interrupts a blocking call with Celery's SoftTimeLimitExceeded, the hard stop ends a step
that swallowed it with an exception its ``except Exception`` cannot swallow, the process
ends itself when it never gets control back, and nothing is left armed after a step."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from workers import deadline
from workers.deadline import StepKilled, step_limits

ROOT = Path(__file__).resolve().parents[2]


def test_a_step_past_its_timeout_gets_soft_time_limit_exceeded() -> None:
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(SoftTimeLimitExceeded), step_limits(0.2, 30.0):
        time.sleep(30)  # a blocking call, interrupted
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


def test_a_step_that_swallows_its_soft_stop_is_ended_at_its_hard_one() -> None:
    soft = 0
    with pytest.raises(StepKilled), step_limits(0.1, 0.2):
        while True:
            try:
                time.sleep(1)
            except Exception:  # a tool that swallows every error
                soft += 1
    assert soft == 1
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_step_that_ends_in_time_leaves_nothing_armed() -> None:
    with step_limits(0.3, 0.3):
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    time.sleep(0.8)  # past both stops: no signal comes


def test_an_exit_cut_short_is_disarmed_by_the_caller_and_never_undoes_a_newer_arming(
        ) -> None:
    """A stop that fires as the block ends can cut the ``with``'s exit short: the caller's
    own ``disarm()`` undoes what is left; an old arming undone late (its generator
    collected) must not undo the stops of the step that runs now."""
    before = signal.getsignal(signal.SIGALRM)
    cut = step_limits(5.0, 5.0)
    cut.__enter__()  # its exit never runs
    assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    deadline.disarm()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before
    old = step_limits(5.0, 5.0)
    old.__enter__()
    with step_limits(0.2, 5.0), pytest.raises(SoftTimeLimitExceeded):
        old.__exit__(None, None, None)  # the old arming, undone now: not the new one's
        time.sleep(5)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


def test_unarmed_limits_arm_nothing() -> None:
    with step_limits(0.01, 0.01, armed=False):
        time.sleep(0.1)


STUCK = """
import signal, time
from workers.deadline import step_limits
with step_limits(0.1, 0.1):
    # As a tool stuck in C code: no signal handler ever runs.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
print("never")
"""


@pytest.mark.slow
def test_a_process_that_never_gets_control_back_ends_itself() -> None:
    done = subprocess.run([sys.executable, "-c", STUCK], cwd=ROOT, capture_output=True,
                          text=True, timeout=50, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 1, done
    assert "never" not in done.stdout
    assert "time.sleep" in done.stderr or "<string>" in done.stderr, done.stderr
