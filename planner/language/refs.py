"""References between steps: ``{"$ref": "<step_id>"}`` or ``{"$ref": "<step_id>.<path>"}``.

A reference is structured data, never string splicing: a value is either exactly a one-key
object ``{"$ref": "..."}`` (a reference) or ordinary JSON. The path after the step id is
dot-separated object keys and list indexes, e.g. ``s1.hotels.0.name``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from planner.errors import RefError

REF_KEY = "$ref"
STEP_ID_PATTERN = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
_STEP_ID_RE = re.compile(rf"^{STEP_ID_PATTERN}$")
_INDEX_RE = re.compile(r"^-?[0-9]+$")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Ref:
    """A reference: the step it reads and the path inside that step's output.

    In a plan built in Python, ``Ref("a")``, ``Ref("a", ("hotels", 0))`` or
    ``Ref("a.hotels.0")`` stand anywhere in a step's args for ``{"$ref": ...}``: a
    :class:`Step` holds (and serialises) them as that JSON.
    """

    step: str
    path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        head, *rest = str(self.step).split(".")
        # Segments as the JSON form has them: list indexes are written as digits.
        object.__setattr__(self, "step", head)
        object.__setattr__(self, "path", (*rest, *(str(p) for p in self.path)))

    def __str__(self) -> str:
        return ".".join((self.step, *self.path))

    def to_json(self) -> dict[str, str]:
        """``{"$ref": "step.path"}``, the plan language's form of this reference."""
        return {REF_KEY: str(self)}


#: How deep a Ref is looked for (well within the interpreter's recursion limit); one
#: deeper stays as it is, and validation says where it is not JSON.
_MAX_DEPTH = 200


def with_json_refs(value: Any) -> Any:
    """``value`` with every :class:`Ref` in its tree replaced by its JSON form; the very
    same value when it holds none (the walk is iterative and bounded: hostile input is
    refused by validation, not here)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Ref):
            return _json_refs(value, 0)
        if depth < _MAX_DEPTH and isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif depth < _MAX_DEPTH and isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
    return value


def _json_refs(value: Any, depth: int) -> Any:
    if isinstance(value, Ref):
        return value.to_json()
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {key: _json_refs(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_refs(item, depth + 1) for item in value]
    return value


def parse_ref(text: object) -> Ref:
    """Parse the string of a ``$ref``; raise :class:`RefError` saying what is malformed."""
    if not isinstance(text, str):
        raise RefError(f"$ref must be a string like 'step_id.path', got {type(text).__name__}")
    if not text:
        raise RefError("$ref is empty; write 'step_id' or 'step_id.path'")
    head, *path = text.split(".")
    if not _STEP_ID_RE.match(head):
        raise RefError(f"$ref {text!r}: {head!r} is not a step id")
    if any(seg == "" for seg in path):
        raise RefError(f"$ref {text!r}: empty path segment")
    return Ref(head, tuple(path))


def iter_refs(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Ref | RefError]]:
    """Yield ``(location, Ref or RefError)`` for every reference in a JSON value tree."""
    if isinstance(value, Mapping):
        if REF_KEY in value:
            if len(value) != 1:
                extra = sorted(k for k in value if k != REF_KEY)
                yield loc, RefError(f"a $ref object must have no other keys, found {extra}")
                return
            try:
                yield loc, parse_ref(value[REF_KEY])
            except RefError as exc:
                yield loc, exc
            return
        for key, item in value.items():
            yield from iter_refs(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_refs(item, (*loc, index))


def walk_path(value: Any, ref: Ref) -> Any:
    """Follow ``ref.path`` into a step's output; raise :class:`RefError` if it is not there."""
    current = value
    for depth, segment in enumerate(ref.path):
        here = ".".join((ref.step, *ref.path[:depth])) or ref.step
        if isinstance(current, Mapping):
            if segment not in current:
                keys = ", ".join(sorted(map(str, current))[:10]) or "none"
                raise RefError(f"$ref {ref}: {here} has no key {segment!r} (keys: {keys})")
            current = current[segment]
        elif isinstance(current, list):
            if not _INDEX_RE.match(segment):
                raise RefError(f"$ref {ref}: {here} is a list; {segment!r} is not an index")
            index = int(segment)
            if not -len(current) <= index < len(current):
                raise RefError(f"$ref {ref}: index {index} out of range for {here} "
                               f"(length {len(current)})")
            current = current[index]
        else:
            raise RefError(f"$ref {ref}: {here} is {type(current).__name__}, "
                           f"it has no {segment!r}")
    return current


def resolve(value: Any, outputs: Mapping[str, Any]) -> Any:
    """Return ``value`` with every reference replaced by the output it names.

    ``outputs`` maps step ids to their outputs (a skipped step's output is ``None``).
    """
    if isinstance(value, Mapping):
        if REF_KEY in value:
            if len(value) != 1:
                raise RefError("a $ref object must have no other keys")
            ref = parse_ref(value[REF_KEY])
            if ref.step not in outputs:
                raise RefError(f"$ref {ref}: no output for step {ref.step!r}")
            return walk_path(outputs[ref.step], ref)
        return {key: resolve(item, outputs) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, outputs) for item in value]
    return value


def referenced_steps(value: Any) -> set[str]:
    """The ids of the steps that well-formed references in ``value`` read."""
    return {r.step for _, r in iter_refs(value) if isinstance(r, Ref)}


def schema_allows_path(schema: Mapping[str, Any], path: tuple[str, ...],
                       defs: Mapping[str, Any] | None = None) -> str | None:
    """Check that a JSON Schema can have ``path``; return why not, or None if it can.

    Permissive where the schema is: an untyped schema (``Any``) allows every path.
    """
    defs = defs if defs is not None else schema.get("$defs", {})
    if not path:
        return None
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return schema_allows_path(defs.get(name, {}), path, defs)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            reasons = [schema_allows_path(s, path, defs) for s in schema[combinator]]
            if combinator == "allOf":
                return next((r for r in reasons if r), None)
            return None if any(r is None for r in reasons) else reasons[0]
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    head, rest = path[0], path[1:]
    if not kinds:
        return None  # untyped: anything goes
    if "object" in kinds:
        props = schema.get("properties", {})
        if head in props:
            return schema_allows_path(props[head], rest, defs)
        extra = schema.get("additionalProperties", not props)
        if extra is False:
            return f"output has no key {head!r} (keys: {', '.join(sorted(props))})"
        return schema_allows_path(extra if isinstance(extra, Mapping) else {}, rest, defs)
    if "array" in kinds:
        if not _INDEX_RE.match(head):
            return f"output is a list; {head!r} is not an index"
        items = schema.get("items", {})
        prefix = schema.get("prefixItems")
        if prefix and int(head) < len(prefix):
            items = prefix[int(head)]
        return schema_allows_path(items, rest, defs)
    return f"output is {'/'.join(sorted(str(k) for k in kinds))}; it has no {head!r}"
