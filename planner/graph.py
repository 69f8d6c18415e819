"""The plan as a graph: order, cycles, levels and the critical path."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass


def find_cycle(deps: Mapping[str, Set[str]]) -> list[str] | None:
    """Return one cycle as ``[a, b, c, a]``, where each step waits for the one before it,
    or None. Edges to unknown ids are ignored."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(deps, WHITE)
    # Walk "x -> y" as "y depends on x", so a printed cycle reads in execution order.
    dependents: dict[str, list[str]] = {n: [] for n in deps}
    for node, ups in deps.items():
        for up in sorted(ups):
            if up in dependents:
                dependents[up].append(node)
    for start in sorted(deps):
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        colour[start] = GREY
        while stack:
            node, i = stack[-1]
            nxt = dependents[node]
            if i < len(nxt):
                stack[-1] = (node, i + 1)
                child = nxt[i]
                if colour[child] == GREY:
                    return [*path[path.index(child):], child]
                if colour[child] == WHITE:
                    colour[child] = GREY
                    stack.append((child, 0))
                    path.append(child)
            else:
                colour[node] = BLACK
                stack.pop()
                path.pop()
    return None


def topological_order(deps: Mapping[str, Set[str]]) -> list[str]:
    """Steps in an order where each comes after its dependencies (the graph must be a DAG)."""
    remaining = {n: len(ups) for n, ups in deps.items()}
    dependents = dependents_of(deps)
    ready = sorted(n for n, k in remaining.items() if k == 0)
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in dependents[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(order) != len(deps):
        raise ValueError("graph has a cycle")
    return order


def dependents_of(deps: Mapping[str, Set[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n: [] for n in deps}
    for node in deps:
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
