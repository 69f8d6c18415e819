"""Chordal's exceptions: one tree, rooted at :class:`ChordalError`.

    ChordalError
    ├── UserError                  the caller must change something; one line, never a traceback
    │   ├── InvalidInput           a request is wrong                        exit 2, HTTP 422
    │   │   ├── PlanError          a plan cannot be used
    │   │   │   ├── PlanLoadError  missing file, not JSON, not an object
    │   │   │   └── PlanInvalid    one or more :class:`Problem` s, every one of them listed
    │   │   ├── RefError           a ``{"$ref": ...}`` is malformed or cannot be resolved
    │   │   ├── BadRequest         an HTTP body that is not JSON                       HTTP 400
    │   │   └── RequestTooLarge    an HTTP body over CHORDAL_MAX_REQUEST_BYTES         HTTP 413
    │   ├── Unauthorized           no API key, or a wrong one                exit 2, HTTP 401
    │   ├── RateLimited            too many requests; ``retry_after_s``      exit 2, HTTP 429
    │   ├── ConfigError            a setting is wrong; names the variable    exit 2, HTTP 500
    │   ├── NotFound               no such thing                             exit 2, HTTP 404
    │   │   └── RunNotFound        no run with that id (or it expired)
    │   ├── Conflict               the state forbids it (a run id taken)     exit 2, HTTP 409
    │   │   └── InFlight           its Idempotency-Key is still in use; ``retry_after_s``
    │   └── Unavailable            a service it needs does not answer        exit 2, HTTP 503
    │       └── NoWorkerError      no worker consumes a queue a run needs
    └── ToolError                  a signal from a tool (or the engine on its behalf) about a step
        ├── TransientError         worth retrying: timeouts, throttling, dropped connections
        │   └── ModelTransientError    the model service throttled or failed, after SDK retries
        └── PermanentError         retrying cannot help
            ├── ModelAuthError     the model service refused the key or the model
            ├── BudgetExceeded     the run spent its token or USD budget
            └── CalculationError   ``calculate`` was given something it will not evaluate

User errors and tool signals are kept apart: a ``UserError`` goes back to whoever asked
(the CLI prints it, the HTTP API maps ``http_status``); a ``ToolError`` decides what happens
to a step (retry, or its ``on_failure`` policy) and is recorded in the run's report.
"""

from __future__ import annotations

from dataclasses import dataclass


class ChordalError(Exception):
    """Root of every error Chordal raises on purpose."""

    #: The HTTP status an API answers with; ``exit_code`` what the CLI exits with.
    http_status = 500
    exit_code = 1


class UserError(ChordalError):
    """Something the caller must change; its message says what."""

    exit_code = 2


class InvalidInput(UserError):
    """A request (plan, goal, option) is wrong; the message names the field."""

    http_status = 422


class PlanError(InvalidInput):
    """A plan cannot be used."""


class PlanLoadError(PlanError):
    """A plan file is missing, is not JSON, or is not a JSON object."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a plan: where (step id and field) and what."""

    step: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"step {self.step!r}" if self.step is not None else "plan"
        return f"{where}, {self.field}: {self.message}"


class PlanInvalid(PlanError):
    """A plan failed validation; ``problems`` holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid plan: {len(problems)} problem(s)\n{lines}")


class RefError(InvalidInput):
    """A ``$ref`` is malformed, or names a path its target's output does not have."""


class BadRequest(InvalidInput):
    """An HTTP request the API cannot read at all (a body that is not JSON)."""

    http_status = 400


class RequestTooLarge(InvalidInput):
    """An HTTP request body over ``CHORDAL_MAX_REQUEST_BYTES``."""

    http_status = 413


class Unauthorized(UserError):
    """No API key was sent, or it is not one of the server's keys."""

    http_status = 401


class RateLimited(UserError):
    """Too many requests for now; ``retry_after_s`` says when to try again."""

    http_status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConfigError(UserError):
    """A setting is wrong; the message names the variable to set."""

    http_status = 500


class NotFound(UserError):
    """The thing asked for does not exist."""

    http_status = 404


class RunNotFound(NotFound):
    """No run with this id exists (or it expired past its retention)."""


class Conflict(UserError):
    """The request is well formed but the current state forbids it."""

    http_status = 409


class InFlight(Conflict):
    """A request with the same Idempotency-Key is still being handled: asking again in
    ``retry_after_s`` gets its answer (HTTP 409 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(UserError):
    """A service Chordal needs (Redis, the broker, a worker) does not answer; when known,
    ``retry_after_s`` says when to try again."""

    http_status = 503

    def __init__(self, message: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NoWorkerError(Unavailable):
    """No running worker consumes a queue that a run needs."""


class ToolError(ChordalError):
    """An error raised by a tool, or by Chordal on a tool's behalf."""


class TransientError(ToolError):
    """The call may succeed if retried (timeout, throttling, dropped connection)."""

    def __init__(self, message: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the service asked us to wait (``retry-after``); the retry waits as long.
        self.retry_after_s = retry_after_s


class ModelTransientError(TransientError):
    """Throttled, overloaded, failing or slow, after the SDK's own retries."""


class PermanentError(ToolError):
    """Retrying cannot help: the input is wrong or hostile."""


class ModelAuthError(PermanentError):
    """The API refused the key: retrying cannot help; the message says what to set."""


class BudgetExceeded(PermanentError):
    """The run spent its token or USD budget; it ended with its partial results."""


class CalculationError(PermanentError):
    """An expression that ``calculate`` will not evaluate (syntax, limits, division by 0)."""


__all__ = [
    "BadRequest",
    "BudgetExceeded",
    "CalculationError",
    "ChordalError",
    "ConfigError",
    "Conflict",
    "InvalidInput",
    "ModelAuthError",
    "ModelTransientError",
    "NoWorkerError",
    "NotFound",
    "PermanentError",
    "PlanError",
    "PlanInvalid",
    "PlanLoadError",
    "Problem",
    "RateLimited",
    "RefError",
    "RequestTooLarge",
    "RunNotFound",
    "ToolError",
    "TransientError",
    "Unauthorized",
    "Unavailable",
    "UserError",
]


#: What a role that needs a model says when none is configured.
NO_MODEL = ("no model configured: set ANTHROPIC_API_KEY to use Claude, or "
            "CHORDAL_LLM=scripted:PATH to use a scripted model")
