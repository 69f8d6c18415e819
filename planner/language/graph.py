"""The plan as a graph: order, cycles, levels, the critical path and a run's makespan ratio.

``deps`` maps each step to the steps it waits for, which is exactly the predecessor map
that :mod:`graphlib` sorts; cycles and order come from there.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Set
from dataclasses import dataclass


def _sorter(deps: Mapping[str, Set[str]]) -> graphlib.TopologicalSorter[str]:
    # Sorted insertion keeps every answer (order, the cycle printed) the same run to run.
    return graphlib.TopologicalSorter(
        {n: sorted(u for u in deps[n] if u in deps) for n in sorted(deps)})


def find_cycle(deps: Mapping[str, Set[str]]) -> list[str] | None:
    """Return one cycle as ``[a, b, c, a]``, where each step waits for the one before it,
    or None. Edges to unknown ids are ignored."""
    try:
        _sorter(deps).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists it so that each node is a predecessor of the next: execution
        # order. Start it at its smallest id, so the text does not depend on the search.
        cycle: list[str] = list(exc.args[1])[:-1]
        first = cycle.index(min(cycle))
        cycle = cycle[first:] + cycle[:first]
        return [*cycle, cycle[0]]
    return None


def topological_order(deps: Mapping[str, Set[str]]) -> list[str]:
    """Steps in an order where each comes after its dependencies (the graph must be a DAG;
    ``graphlib.CycleError`` otherwise)."""
    return list(_sorter(deps).static_order())


def dependents_of(deps: Mapping[str, Set[str]]) -> dict[str, list[str]]:
    """The reverse edges: for each step, the steps that wait for it, sorted."""
    out: dict[str, list[str]] = {n: [] for n in deps}
    for node in sorted(deps):
        for up in sorted(deps[node]):
            out[up].append(node)
    return out


@dataclass(frozen=True)
class Shape:
    """Numbers that describe a DAG, as ``chordal validate`` prints them."""

    steps: int
    edges: int
    depth: int                 # number of levels; a step's level is 1 + its deepest dependency
    widest: int                # most steps on one level
    critical_path: list[str]   # a longest chain of steps, first to last
    levels: list[list[str]]

    def summary(self) -> str:
        path = " -> ".join(self.critical_path)
        return (f"{self.steps} steps, {self.edges} edges, depth {self.depth}, widest level "
                f"{self.widest}, critical path {len(self.critical_path)} steps ({path})")


def shape(deps: Mapping[str, Set[str]]) -> Shape:
    order = topological_order(deps)
    level: dict[str, int] = {}
    best_parent: dict[str, str | None] = {}
    for node in order:
        ups = sorted(deps[node], key=lambda u: (-level[u], u))
        level[node] = 1 + (level[ups[0]] if ups else 0)
        best_parent[node] = ups[0] if ups else None
    depth = max(level.values())
    levels = [sorted(n for n in order if level[n] == k) for k in range(1, depth + 1)]
    end = min(n for n in order if level[n] == depth)
    chain: list[str] = []
    cursor: str | None = end
    while cursor is not None:
        chain.append(cursor)
        cursor = best_parent[cursor]
    return Shape(
        steps=len(deps),
        edges=sum(len(ups) for ups in deps.values()),
        depth=depth,
        widest=max(len(lv) for lv in levels),
        critical_path=chain[::-1],
        levels=levels,
    )


def makespan_ratio(deps: Mapping[str, Set[str]],
                   spans: Mapping[str, tuple[float, float]]) -> float | None:
    """Makespan over the critical path of the DAG ``deps``, each step weighted by its span
    (start, end; steps that never ran weigh nothing). None when nothing ran."""
    ran = [spans[s] for s in deps if s in spans]
    if not ran:
        return None
    edges = {s: {u for u in ups if u in deps} for s, ups in deps.items()}
    longest: dict[str, float] = {}
    for step in topological_order(edges):
        start, end = spans.get(step, (0.0, 0.0))
        longest[step] = max(end - start, 0.0) + max(
            (longest[u] for u in edges[step]), default=0.0)
    critical = max(longest.values())
    makespan = max(end for _, end in ran) - min(start for start, _ in ran)
    return makespan / critical if critical > 0 else None
