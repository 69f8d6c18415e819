"""Hypothesis strategies: random DAG-shaped plans over the testing tools."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


@st.composite
def dag_plans(draw: st.DrawFn, min_steps: int = 1, max_steps: int = 25,
              tool: str = "echo") -> dict[str, Any]:
    """A plan whose steps only depend on earlier ones (so it is acyclic), mixing
    ``depends_on`` edges and ``$ref`` edges."""
    n = draw(st.integers(min_steps, max_steps))
    ids = [f"s{i}" for i in range(n)]
    steps = []
    for i, sid in enumerate(ids):
        ups = draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=3)) if i else []
        as_ref = draw(st.lists(st.booleans(), min_size=len(ups), max_size=len(ups)))
        refs = [{"$ref": u} for u, r in zip(ups, as_ref, strict=True) if r]
        step: dict[str, Any] = {"id": sid, "tool": tool,
                                "depends_on": [u for u, r in zip(ups, as_ref, strict=True)
                                               if not r]}
        step["args"] = {"value": refs or sid} if tool == "echo" else {"seconds": 0}
        steps.append(step)
    return {"goal": "random", "steps": steps}
