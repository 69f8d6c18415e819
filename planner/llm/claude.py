"""Claude through the anthropic SDK. ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` are
read by the SDK itself (the latter is how it reaches a proxy or a compatible server)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anthropic

from planner.errors import (
    ConfigError,
    ModelAuthError,
    ModelTransientError,
    PermanentError,
)
from planner.llm.model import NO_MODEL, ModelRequest, ModelResponse, Usage


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class AnthropicModel:
    name = "anthropic"

    def __init__(self, timeout_s: float = 120.0, max_retries: int = 3,
                 api_key: str | None = None, base_url: str | None = None) -> None:
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError(NO_MODEL)
        # The SDK retries 408/409/429/5xx (529 overloaded included) and timeouts with
        # backoff, honouring retry-after; past that, the Celery task retries the call.
        self.client = anthropic.Anthropic(api_key=key, base_url=base_url,
                                          timeout=timeout_s, max_retries=max_retries)

    def _kwargs(self, request: ModelRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": request.config.model,
            "max_tokens": request.config.max_tokens,
            "system": request.system,
            "messages": request.messages,
        }
        if request.tools:
            kwargs["tools"] = request.tools
        if request.tool_choice:
            kwargs["tool_choice"] = request.tool_choice
        if request.config.temperature is not None:
            kwargs["extra_body"] = {"temperature": request.config.temperature}
        return kwargs

    def complete(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        with self._errors(request):
            message = self.client.messages.create(**self._kwargs(request))
        return _response(message, time.perf_counter() - started)

    def stream(self, request: ModelRequest, on_json: Callable[[str], None]) -> ModelResponse:
        """The same call, streamed: ``on_json`` gets each piece of a tool call's input
        JSON as it arrives (``input_json_delta``); the whole message is returned at the
        end, as :meth:`complete` returns it. An exception of ``on_json`` stops the call."""
        started = time.perf_counter()
        with self._errors(request), \
                self.client.messages.stream(**self._kwargs(request)) as stream:
            for event in stream:
                if event.type == "content_block_delta" and \
                        event.delta.type == "input_json_delta":
                    on_json(event.delta.partial_json)
            message = stream.get_final_message()
        return _response(message, time.perf_counter() - started)

    @contextmanager
    def _errors(self, request: ModelRequest) -> Iterator[None]:
        """The SDK's errors as Chordal's: transient ones are retried by the task."""
        try:
            yield
        except anthropic.AuthenticationError as exc:
            raise ModelAuthError(f"the Anthropic API refused ANTHROPIC_API_KEY ({exc.status_code})"
                                 ": set a valid key") from None
        except anthropic.PermissionDeniedError as exc:
            raise ModelAuthError(f"ANTHROPIC_API_KEY may not use {request.config.model} "
                                 f"({exc.status_code}); set CHORDAL_{request.role.upper()}"
                                 "_MODEL to a model it may use") from None
        except anthropic.RateLimitError as exc:
            raise ModelTransientError(f"rate limited (429): {exc.message}",
                                      _retry_after(exc)) from None
        except anthropic.InternalServerError as exc:  # 5xx, 529 overloaded included
            raise ModelTransientError(f"model service error ({exc.status_code}): "
                                      f"{exc.message}", _retry_after(exc)) from None
        except anthropic.APITimeoutError:
            raise ModelTransientError(f"no answer within {self.client.timeout} s") from None
        except anthropic.APIConnectionError as exc:
            raise ModelTransientError(f"cannot reach the model service: {exc}") from None
        except anthropic.APIResponseValidationError as exc:
            raise ModelTransientError(f"malformed response from the model service: "
                                      f"{exc.message}") from None
        except json.JSONDecodeError as exc:  # a body that is not JSON (a proxy's error page)
            raise ModelTransientError(f"malformed response from the model service: not "
                                      f"JSON ({exc.msg})") from None
        except anthropic.APIStatusError as exc:
            raise PermanentError(f"the model service refused the request "
                                 f"({exc.status_code}): {exc.message}") from None


def _response(message: Any, latency: float) -> ModelResponse:
    return ModelResponse(
        content=[block.model_dump(mode="json", exclude_none=True)
                 for block in message.content],
        usage=Usage.from_api(message.usage),
        model=message.model,
        stop_reason=message.stop_reason,
        latency_s=latency,
    )
