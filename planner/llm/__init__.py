"""The model side: Claude (through the anthropic SDK) or a scripted stand-in, and the roles
it plays (planner, replanner, executor, synthesizer)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from planner.errors import ConfigError
from planner.llm.model import (
    NO_MODEL,
    ROLES,
    Model,
    ModelRequest,
    ModelResponse,
    Role,
    RoleConfig,
    Usage,
)
from planner.llm.scripted import ScriptedModel
from planner.settings import Settings


def make_model(settings: Settings) -> Model | None:
    """The configured model, or None when neither CHORDAL_LLM nor ANTHROPIC_API_KEY is set."""
    spec = settings.model.llm
    if spec is None:
        if not os.environ.get("ANTHROPIC_API_KEY"):
            return None
        spec = "anthropic"
    if spec == "anthropic":
        from planner.llm.claude import AnthropicModel  # the SDK loads only when it is used

        return AnthropicModel(settings.model.llm_timeout_s, settings.model.llm_max_retries)
    if spec.startswith("scripted:") and spec.removeprefix("scripted:"):
        return ScriptedModel.from_file(spec.removeprefix("scripted:"))
    raise ConfigError(f"CHORDAL_LLM must be 'anthropic' or 'scripted:PATH', not {spec!r}")


def require_model(settings: Settings) -> Model:
    model = make_model(settings)
    if model is None:
        raise ConfigError(NO_MODEL)
    return model


if TYPE_CHECKING:
    from planner.llm.claude import AnthropicModel


def __getattr__(name: str) -> Any:
    # The anthropic SDK takes over a second to import: only a process that talks to
    # Claude pays for it (PEP 562).
    if name == "AnthropicModel":
        from planner.llm.claude import AnthropicModel

        return AnthropicModel
    raise AttributeError(f"module 'planner.llm' has no attribute {name!r}")


__all__ = [
    "NO_MODEL",
    "ROLES",
    "AnthropicModel",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "Role",
    "RoleConfig",
    "ScriptedModel",
    "Usage",
    "make_model",
    "require_model",
]
