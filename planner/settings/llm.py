"""The areas of the model side: which model each role uses and how it is called, and what
a run may spend."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from planner.settings.area import Area, unset_means
from planner.settings.values import JsonText

# Defaults from the anthropic SDK's model list: a strong model plans, a fast one executes.
STRONG_MODEL = "claude-opus-5-5"
FAST_MODEL = "claude-haiku-5-5"
# USD per million tokens by model-id prefix, an estimate to override with CHORDAL_PRICES.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-opus": {"input": 5.0, "output": 25.0, "cache_read": 0.5, "cache_write": 6.25},
    "claude-sonnet": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
    "claude-haiku": {"input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25},
}


class ModelSettings(Area):
    """The model: which one each role uses (planner, replanner, executor, synthesizer) and
    how it is called (docs/model.md)."""

    llm: str | None = Field(None, description="'anthropic' (the default when ANTHROPIC_API_KEY "
                                              "is set) or 'scripted:PATH'.",
                            json_schema_extra=unset_means("anthropic if ANTHROPIC_API_KEY "
                                                          "is set, else no model"))
    # Temperatures are sent only when set: current models pick their own sampling, and the
    # SDK no longer takes the parameter (it goes as an extra body field).
    planner_model: str = Field(STRONG_MODEL, description="Model that plans.")
    planner_max_tokens: int = Field(8_192, ge=1, description="Most tokens of a plan.")
    planner_temperature: float | None = Field(None, ge=0, le=1, description="The planner's "
                                                                            "temperature.",
                                              json_schema_extra=unset_means("the model's"))
    replanner_model: str = Field(STRONG_MODEL, description="Model that replans.")
    replanner_max_tokens: int = Field(8_192, ge=1, description="Most tokens of a replan.")
    replanner_temperature: float | None = Field(None, ge=0, le=1, description="The "
                                                "replanner's temperature.",
                                                json_schema_extra=unset_means("the model's"))
    executor_model: str = Field(FAST_MODEL, description="Model of `llm` and `agent` steps.")
    executor_max_tokens: int = Field(2_048, ge=1, description="Most tokens of an `llm` "
                                                              "step's answer or an agent's "
                                                              "turn.")
    executor_temperature: float | None = Field(None, ge=0, le=1, description="The "
                                               "executor's temperature.",
                                               json_schema_extra=unset_means("the model's"))
    synthesizer_model: str = Field(FAST_MODEL, description="Model that writes the answer.")
    synthesizer_max_tokens: int = Field(2_048, ge=1, description="Most tokens of the answer.")
    synthesizer_temperature: float | None = Field(None, ge=0, le=1, description="The "
                                                  "synthesizer's temperature.",
                                                  json_schema_extra=unset_means("the model's"))
    agent_result_chars: int = Field(16_000, ge=200, description="Most characters of one "
                                    "tool result an agent step's model is shown (longer ones "
                                    "are cut, saying so).")
    plan_repairs: int = Field(2, ge=0, le=10, description="Times an invalid plan goes back "
                                                          "to the model for repair.")
    llm_timeout_s: float = Field(120.0, gt=0, description="Seconds per model request.")
    llm_max_retries: int = Field(3, ge=0, description="SDK retries of 429/529/5xx/timeouts "
                                                      "(honouring retry-after) per attempt.")
    llm_rate_limit_per_min: int | None = Field(
        None, ge=1, description="Model calls per minute, shared by every worker.",
        json_schema_extra=unset_means("no limit"))


class BudgetSettings(Area):
    """What a run may spend on the model, and what tokens cost."""

    budget_tokens: int | None = Field(None, ge=1, description="Per-run token budget.",
                                      json_schema_extra=unset_means("no budget"))
    budget_usd: float | None = Field(None, gt=0, description="Per-run budget in USD.",
                                     json_schema_extra=unset_means("no budget"))
    prices: Annotated[dict[str, dict[str, float]], JsonText] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per million tokens by model-id prefix (JSON): input, output, "
                    "cache_read, cache_write.")

