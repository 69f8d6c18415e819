"""The control plane: the engine's decisions about a run, apart from the Celery tasks that
carry them out (``workers.tasks``).

Data path: :mod:`~planner.engine.start` records and starts a run; each step message is one
delivery in :mod:`~planner.engine.steps`; :mod:`~planner.engine.outcomes` decides what follows
(publish ready steps, retry, a failure policy); :mod:`~planner.engine.join` writes the answer.
Messages go out through a :class:`~planner.engine.dispatch.Publisher`: Celery's
(:mod:`~planner.engine.publisher`, imported only where one publishes), or the in-memory
one that tests read.
"""

from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import MemoryPublisher, Message, Publisher
from planner.engine.outcomes import Retry
from planner.engine.runtime import Runtime

__all__ = ["CompiledPlan", "MemoryPublisher", "Message", "Publisher",
           "Retry", "Runtime"]
