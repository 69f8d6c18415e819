"""A model bound to one run: it meters usage, enforces the run's budget, and shares the
rate limit of every worker."""

from __future__ import annotations

from dataclasses import replace

from planner import metrics, tracing
from planner.errors import BudgetExceeded, TransientError
from planner.llm.model import Model, ModelRequest, ModelResponse
from planner.llm.scripted import exchange
from planner.settings import Settings
from planner.store.ratelimit import RateLimiter
from planner.store.records import ErrorRecord, RunOptions
from planner.store.runs import RunStore
from planner.usage import Budget, cost_usd, summarize
from planner.vocabulary import RunStatus


def run_budget(settings: Settings, options: RunOptions) -> Budget:
    return Budget(options.budget_tokens if options.budget_tokens is not None
                  else settings.budget.budget_tokens,
                  options.budget_usd if options.budget_usd is not None
                  else settings.budget.budget_usd)


def stop_for_budget(store: RunStore, run_id: str, reason: str, options: RunOptions
                    ) -> bool:
    """The run crossed its budget: no new steps start. By default it ends, its answer
    what it earned so far; with ``on_budget="pause"`` it waits for ``chordal resume``
    (True), unless it is already ending (its partial answer is being written)."""
    if options.on_budget == "pause":
        if store.run_state(run_id).ending is not None:
            return False
        if store.set_status(run_id, RunStatus.PAUSED, f"budget exceeded: {reason}; resume with a "
                            f"new budget (chordal resume {run_id} --budget-usd X) or cancel",
                            from_=(RunStatus.RUNNING,)):
            metrics.budget_stopped()  # counted by the call that paused it, once
        return store.run_state(run_id).status == RunStatus.PAUSED
    earned = store.outputs(run_id, store.completed(run_id))
    if store.finish_run(run_id, RunStatus.FAILED, answer={"partial": earned}, partial=True,
                        error=ErrorRecord(type="BudgetExceeded",
                                          message=f"budget exceeded: {reason}")):
        metrics.budget_stopped()
    return False


class MeteredModel:
    def __init__(self, model: Model, store: RunStore, settings: Settings, run_id: str,
                 step_id: str | None = None, limiter: RateLimiter | None = None) -> None:
        self.model, self.store, self.settings = model, store, settings
        self.run_id, self.step_id, self.limiter = run_id, step_id, limiter
        self.name = model.name
        self.options = store.options(run_id)
        self.budget = run_budget(settings, self.options)

    def over_budget(self) -> str | None:
        if self.budget.max_tokens is None and self.budget.max_usd is None:
            return None
        total = summarize(self.store.usage_fields(self.run_id), self.settings.budget.prices).total
        return self.budget.exceeded(total)

    def complete(self, request: ModelRequest, stop_when_over: bool = True) -> ModelResponse:
        """Call the model, metered. A call that crosses the budget is kept; with
        ``stop_when_over`` it also ends the run (no new steps start)."""
        reason = self.over_budget()
        if reason:
            if stop_for_budget(self.store, self.run_id, reason, self.options):
                # Not a failure: the call is made again when the run is resumed.
                raise TransientError(f"the run is paused at its budget: {reason}")
            raise BudgetExceeded(f"budget exceeded before this call: {reason}")
        if request.step is None and self.step_id is not None:
            # Which step asks goes with the request: a scripted response for a step
            # answers only it (and `chordal record` writes the step with each exchange).
            request = replace(request, step=self.step_id)
        if self.limiter:
            self.limiter.acquire()
        role, model = request.role, request.config.model
        try:
            # A span per call (GenAI semantic conventions), a child of the task's span.
            with tracing.model_span(role, self.model.name, request.config):
                response = tracing.model_response(self.model.complete(request))
        except Exception as exc:
            metrics.model_called(role, model, "transient_error"
                                 if isinstance(exc, TransientError) else "error")
            raise
        u = response.usage
        tokens = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                  "cache_read_input_tokens": u.cache_read_input_tokens,
                  "cache_creation_input_tokens": u.cache_creation_input_tokens}
        self.store.record_usage(self.run_id, role, model, self.step_id, {
            "calls": 1, **tokens, "latency_ms": round(response.latency_s * 1000)})
        metrics.model_called(role, model, "ok", response.latency_s, tokens,
                             cost_usd(model, tokens, self.settings.budget.prices))
        # Kept whole, so `chordal record` can make the run a replayable scripted model.
        self.store.record_exchange(self.run_id, exchange(request, response, self.step_id))
        if stop_when_over and (reason := self.over_budget()):
            # This call is paid for: its answer is kept, but nothing new starts.
            stop_for_budget(self.store, self.run_id, reason, self.options)
        return response
