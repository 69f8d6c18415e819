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


# -- what a $ref's value can be, against what its argument accepts ------------------------

#: A set of JSON types (JSON Schema's names); None: any JSON value.
Kinds = frozenset[str] | None

_ARTICLE = {"string": "a string", "integer": "an integer", "number": "a number",
            "boolean": "a boolean", "array": "a list", "object": "an object", "null": "null"}
_ORDER = list(_ARTICLE)


def ref_type_clash(output_schema: Mapping[str, Any], path: tuple[str, ...],
                   input_schema: Mapping[str, Any], loc: Loc, *, lax: bool = False
                   ) -> tuple[str, str] | None:
    """If the value a ``$ref`` reads (at ``path`` in an output of ``output_schema``) can
    never be what the argument at ``loc`` of ``input_schema`` accepts, say what each is
    (``("a string", "an integer")``); None when they may match, or either is unknown.

    Only JSON types count, and generously: an integer is a number and a number may be an
    integer (``2.0``); unions, ``Optional`` and ``Any`` match if any member does. ``lax``:
    the reader converts as pydantic's lax mode does (a Python tool), so a string may become
    a number or a boolean and a boolean a number (and back); without it, the reader checks
    JSON types strictly (an MCP tool's JSON Schema). Only what the reader would refuse at
    run time is refused here.
    """
    produced = _kinds_at(output_schema, path)
    accepted = _kinds_at(input_schema, tuple(str(p) for p in loc))
    if produced is None or accepted is None or not produced or not accepted:
        return None
    if _numeric(_lax(produced) if lax else produced) & _numeric(accepted):
        return None
    return describe_kinds(produced), describe_kinds(accepted)


def describe_kinds(kinds: frozenset[str]) -> str:
    return " or ".join(_ARTICLE.get(k, k) for k in sorted(
        kinds, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER)))


#: What pydantic's lax mode turns a value of each JSON type into (python mode, the one
#: Tool.invoke validates with): "42" -> 42, "true" -> True, True -> 1, 1 -> True.
_LAX = {"string": {"string", "integer", "number", "boolean"},
        "integer": {"integer", "number", "boolean"},
        "number": {"integer", "number", "boolean"},
        "boolean": {"boolean", "integer", "number"}}


def _lax(kinds: frozenset[str]) -> frozenset[str]:
    return frozenset(k for kind in kinds for k in _LAX.get(kind, {kind}))


def _numeric(kinds: frozenset[str]) -> frozenset[str]:
    return frozenset("number" if k == "integer" else k for k in kinds)


def _kinds_at(schema: Mapping[str, Any], path: tuple[str, ...]) -> Kinds:
    """The JSON types the value at ``path`` of a value of ``schema`` may have: None for
    any; empty when the schema cannot have the path (:func:`schema_allows_path` says so)."""
    defs = schema.get("$defs", {})
    found: frozenset[str] = frozenset()
    for sub in _schemas_at(schema, path, defs, 0):
        kinds = _kinds(sub, defs, 0)
        if kinds is None:
            return None
        found |= kinds
    return found


def _resolve(schema: Any, defs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``schema`` with its local ``$ref`` followed; None for a schema that allows
    anything (``true``, ``{}``) or one not understood (a remote ``$ref``)."""
    for _ in range(32):  # a chain of $refs, not a loop of them
        if not isinstance(schema, Mapping):
            return None
        if "$ref" not in schema:
            return schema
        target = str(schema["$ref"])
        if not target.startswith("#/$defs/"):
            return None
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**defs.get(target.rsplit("/", 1)[-1], {}), **siblings}
    return None


def _schemas_at(schema: Any, path: tuple[str, ...], defs: Mapping[str, Any], depth: int
                ) -> list[Any]:
    """The schemas that may describe the value at ``path`` (``True``: anything)."""
    if not path:
        return [schema]
    s = _resolve(schema, defs)
    if s is None or depth > 64:
        return [True]
    out: list[Any] = []
    for combinator in ("anyOf", "oneOf"):
        for member in _list(s.get(combinator)):
            out.extend(_schemas_at(member, path, defs, depth + 1))
    if "allOf" in s:
        members = _list(s["allOf"])
        return (_schemas_at(members[0], path, defs, depth + 1) if len(members) == 1
                else [True])
    kinds = set(_types(s) or ())
    if not kinds:  # the keywords say what it is, if anything does
        kinds = ({"object"} if "properties" in s or "additionalProperties" in s else
                 {"array"} if "items" in s or "prefixItems" in s else set())
    if not kinds and not any(k in s for k in ("anyOf", "oneOf")):
        return [True]  # untyped: anything
    head, rest = path[0], path[1:]
    if "object" in kinds:
        props = s.get("properties")
        props = props if isinstance(props, Mapping) else {}
        if head in props:
            out.extend(_schemas_at(props[head], rest, defs, depth + 1))
        elif s.get("patternProperties"):
            out.append(True)
        else:
            extra = s.get("additionalProperties", True)
            if extra is not False:
                out.extend(_schemas_at(extra, rest, defs, depth + 1))
    if "array" in kinds and _INDEX_RE.match(head):
        prefix = _list(s.get("prefixItems"))
        index = int(head)
        item = prefix[index] if 0 <= index < len(prefix) else s.get("items", True)
        if item is not False:
            out.extend(_schemas_at(item, rest, defs, depth + 1))
    return out


def _kinds(schema: Any, defs: Mapping[str, Any], depth: int) -> Kinds:
    s = _resolve(schema, defs)
    if s is None or depth > 64:
        return None
    kinds = _types(s)
    if "const" in s:
        kinds = _both(kinds, frozenset([_kind_of(s["const"])]))
    if isinstance(s.get("enum"), list):
        kinds = _both(kinds, frozenset(_kind_of(v) for v in s["enum"]))
    for combinator in ("anyOf", "oneOf"):
        if combinator in s:
            union: Kinds = frozenset()
            for member in _list(s[combinator]):
                one = _kinds(member, defs, depth + 1)
                union = None if union is None or one is None else union | one
            kinds = _both(kinds, union)
    for member in _list(s.get("allOf")):
        kinds = _both(kinds, _kinds(member, defs, depth + 1))
    return kinds


def _types(s: Mapping[str, Any]) -> Kinds:
    kind = s.get("type")
    names = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    found = frozenset(k for k in names if isinstance(k, str))
    return found or None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _both(a: Kinds, b: Kinds) -> Kinds:
    if a is None:
        return b
    if b is None:
        return a
    both = _numeric(a) & _numeric(b)
    return frozenset(k for k in a | b if ("number" if k == "integer" else k) in both)


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
