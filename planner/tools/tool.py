"""The tool contract: typed Python functions made tools with :func:`tool`.

A tool's input schema comes from its signature, its output schema from its return
annotation (both through pydantic). A parameter annotated :class:`ToolContext` is filled
in by the engine and is not part of the input schema. A tool may be ``async def``: its
coroutine is awaited on the process's event loop (:mod:`planner.tools.aio`), and its return
annotation is the awaited type.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from planner.errors import ConfigError, PermanentError, ToolError, TransientError
from planner.jsonvalue import unfaithful
from planner.tools import aio
from planner.wire import DEFAULT_QUEUE

#: An attempt's time limit when neither the step nor its tool says.
DEFAULT_TIMEOUT_S = 300.0

# Errors worth retrying when a tool does not say otherwise: the network and the clock.
DEFAULT_TRANSIENT: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves."""

    run_id: str
    step_id: str
    attempt: int  # 1 for the first attempt of this step in this run
    # Ask the run's executor model: (prompt parts, system or None) -> text. Its usage is
    # metered to this run and step and counts against the run's budget. None: no model.
    llm: Callable[[list[Any], str | None], str] | None = field(default=None, compare=False)
    # The attempt's time limit (the step's timeout_s); None: the tool's. An async tool is
    # cancelled when it runs out; a sync one may pass it on (to an HTTP client, say).
    timeout_s: float | None = None
    # Set when an agent step's model asked for this call (``t<turn>.c<index>``): a tool with
    # side effects keys them by f"{run_id}:{step_id}:{call_id}", the same on every attempt
    # of that call and distinct between calls of one step (docs/reliability.md).
    call_id: str | None = None


@dataclass(frozen=True)
class Tool:
    """A registered tool. Calling it calls the function."""

    name: str
    fn: Callable[..., Any]
    description: str
    input_model: type[BaseModel]
    output_schema: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    max_retries: int = 3
    timeout_s: float = 300.0
    transient: tuple[type[BaseException], ...] = DEFAULT_TRANSIENT
    permanent: tuple[type[BaseException], ...] = ()
    context_param: str | None = None
    _output_adapter: TypeAdapter[Any] | None = field(default=None, repr=False, compare=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    def invoke(self, args: Mapping[str, Any], ctx: ToolContext) -> Any:
        """Validate ``args``, call the tool, and return its output as JSON-ready data."""
        try:
            model = self.input_model.model_validate(dict(args))
        except ValidationError as exc:
            raise PermanentError(f"{self.name}: bad arguments: {_one_line(exc)}") from None
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        if self.context_param:
            kwargs[self.context_param] = ctx
        result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            limit = ctx.timeout_s if ctx.timeout_s is not None else self.timeout_s
            result = aio.run(result, limit, f"tool {self.name!r}")
        bad = unfaithful(result)
        if bad is not None:
            raise PermanentError(f"{self.name}: its output is not plain JSON: {bad}")
        if self._output_adapter is not None:
            return self._output_adapter.dump_python(result, mode="json")
        return result

    @property
    def lax_args(self) -> bool:
        """Whether its args are converted as pydantic's lax mode does ("42" -> 42): what a
        ``$ref`` may carry into them is judged by it (validation)."""
        return not self.input_model.model_config.get("strict", False)

    def check_args(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Problems of ``args`` against the input schema, as pydantic's error dicts
        (``loc``, ``type``, ``msg``); none: the args fit. Validation reports these."""
        try:
            self.input_model.model_validate(dict(args))
        except ValidationError as exc:
            return [dict(e) for e in exc.errors()]
        return []

    def classify(self, exc: BaseException) -> type[ToolError]:
        """Transient (retry) or permanent, from the error's type and the tool's declaration."""
        if isinstance(exc, TransientError):
            return TransientError
        if isinstance(exc, PermanentError):
            return PermanentError
        if self.permanent and isinstance(exc, self.permanent):
            return PermanentError
        if isinstance(exc, self.transient):
            return TransientError
        return PermanentError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "queue": self.queue,
            "max_retries": self.max_retries,
            "timeout_s": self.timeout_s,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }


def _one_line(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors()
    )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    max_retries: int = 3,
    timeout_s: float = 300.0,
    transient: Iterable[type[BaseException]] = (),
    permanent: Iterable[type[BaseException]] = (),
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    max_retries: int = 3,
    timeout_s: float = 300.0,
    transient: Iterable[type[BaseException]] = (),
    permanent: Iterable[type[BaseException]] = (),
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a typed function a Chordal tool.

    ``transient`` errors are retried with backoff up to a step's ``max_retries``;
    ``permanent`` ones are not (they win when an error matches both). Errors in neither
    are permanent, except :class:`TimeoutError` and :class:`ConnectionError`.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return _make_tool(f, name=name or f.__name__, queue=queue, max_retries=max_retries,
                          timeout_s=timeout_s, transient=(*DEFAULT_TRANSIENT, *transient),
                          permanent=tuple(permanent))

    return wrap(fn) if fn is not None else wrap


def _make_tool(f: Callable[..., Any], *, name: str, queue: str, max_retries: int,
               timeout_s: float, transient: tuple[type[BaseException], ...],
               permanent: tuple[type[BaseException], ...]) -> Tool:
    where = f"tool {name!r} ({f.__module__}.{f.__qualname__})"
    if max_retries < 0 or timeout_s <= 0:
        raise ConfigError(f"{where}: max_retries must be >= 0 and timeout_s > 0")
    if inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f):
        raise ConfigError(f"{where}: a generator cannot be a tool; return the whole output "
                          "(a list, say)")
    hints = get_type_hints(f, include_extras=True)
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(f).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigError(f"{where}: parameter {param.name!r} must be a plain named one")
        if param.name not in hints:
            raise ConfigError(f"{where}: parameter {param.name!r} needs a type annotation")
        if hints[param.name] is ToolContext:
            context_param = param.name
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    if "return" not in hints:
        raise ConfigError(f"{where}: needs a return annotation (it is the output schema)")
    model_name = "".join(part.capitalize() for part in name.split("_")) + "Args"
    input_model = create_model(
        model_name, __config__=ConfigDict(extra="forbid"), **fields
    )
    adapter: TypeAdapter[Any] = TypeAdapter(hints["return"])
    return Tool(
        name=name,
        fn=f,
        description=inspect.cleandoc(f.__doc__ or "").split("\n\n")[0],
        input_model=input_model,
        output_schema=adapter.json_schema(),
        queue=queue,
        max_retries=max_retries,
        timeout_s=timeout_s,
        transient=transient,
        permanent=permanent,
        context_param=context_param,
        _output_adapter=adapter,
    )
