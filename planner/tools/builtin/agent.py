"""``agent``: a step the executor model carries out with tools, over several turns.

It is registered so that it is in the catalogue the planner, the replanner and a
checkpoint's reviewer read, and so that validation checks its arguments like any tool's.
The engine never calls its function: it runs an agent step turn by turn, one task per model
call and one per tool call (docs/design/agent-steps.md, planner/engine/agent.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from planner.errors import PermanentError
from planner.tools.agent import AGENT_TOOL, DEFAULT_MAX_TURNS, MAX_TURNS
from planner.tools.tool import tool
from planner.wire import LLM_QUEUE


@tool(name=AGENT_TOOL, queue=LLM_QUEUE, max_retries=2, timeout_s=300)
def agent(
    task: Annotated[str, Field(description=(
        "What to do and what to answer, as an instruction to the executor model."))],
    tools: Annotated[list[str], Field(description=(
        "The catalogue tools it may call, by name: the fewest that do the job; not 'agent'. "
        "Written in the plan, not a $ref."))],
    context: Annotated[Any, Field(description=(
        "Material it reads (any JSON), typically $refs to earlier steps' outputs."))] = None,
    max_turns: Annotated[int, Field(ge=1, le=MAX_TURNS, description=(
        "Model calls it may make before it must have answered; each turn may call several "
        "tools at once."))] = DEFAULT_MAX_TURNS,
    output_schema: Annotated[dict[str, Any] | None, Field(description=(
        "A JSON Schema (inline: no $ref/$defs) its answer must fit; set it when later steps "
        "$ref parts of the answer. Without it the answer is text."))] = None,
) -> Any:
    """A task the executor model carries out with tools, calling them as often as it needs
    and reading what they return, then answering. Use it only when later calls depend on
    reading earlier results (choosing among them, retrying with other values, paging); when
    the arguments are known, or a $ref path selects them, plan concrete steps instead
    (cheaper, deterministic, parallel). Its output is its answer: a value that fits
    output_schema, else text. It fails (MaxTurns) if it has not answered in max_turns."""
    raise PermanentError("the 'agent' tool is run by the engine turn by turn, never "
                         "invoked as a function")
