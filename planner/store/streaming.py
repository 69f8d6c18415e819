"""A plan that streams in (planner/engine/streaming.py), in the run store: the run's
``streaming`` mark (set while its planner's answer still streams: no join ends the run
and no replanner acts meanwhile), the moment each step was written, and the cancelling
of the early steps the final plan contradicts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from planner.store.base import StoreBase
from planner.store.keys import RunKeys

#: What the final plan makes of an early step: left out (``drop``) or run again as it now
#: reads (``reset``).
EarlyFate = Literal["drop", "reset"]


class StreamedPlans(StoreBase):
    """The run-store side of plans that start while they are written."""

    def set_streaming(self, run_id: str, on: bool) -> None:
        key = RunKeys(run_id).run
        if on:
            self.r.hset(key, "streaming", "1")
        else:
            self.r.hdel(key, "streaming")

    def streaming(self, run_id: str) -> bool:
        return bool(self.r.hexists(RunKeys(run_id).run, "streaming"))

    def note_written(self, run_id: str, step_id: str, early: bool) -> None:
        """A ``plan.step_written`` event: the model finished writing ``step_id``."""
        k = RunKeys(run_id)
        self._run("note_written", [k.run, k.events], step_id, "1" if early else "0")

    def cancel_early(self, run_id: str, fates: Mapping[str, EarlyFate]) -> list[str]:
        """Cancel the early steps the final plan contradicts (``cancel_early.lua``);
        return those that had been published or had started (the others needed nothing)."""
        if not fates:
            return []
        k = RunKeys(run_id)
        reply = self._run("cancel_early", [k.run, k.steps, k.events, k.outputs],
                          json.dumps(sorted(s for s, f in fates.items() if f == "drop")),
                          json.dumps(sorted(s for s, f in fates.items() if f == "reset")))
        return [str(s) for s in reply]
