"""What a value crossing Chordal may be: plain JSON, of bounded depth and size.

Plans, goals and step outputs come from people, models and tools; each is checked here
before anything is written, so a hostile or accidental value gets one clear problem (where
it is, and what is wrong) instead of an exception from deep inside a serializer. The walk
is iterative: a value nested 10,000 levels deep cannot overflow the stack.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from typing import Any

#: Integers beyond this many bits are refused (the bound ``calculate`` keeps as well).
MAX_INT_BITS = 4_096


def json_problems(value: Any, max_depth: int, where: str = "") -> list[tuple[str, str]]:
    """Every way ``value`` is not plain JSON, as ``(path, what)``; at most one per kind of
    problem (a list of a million NaNs gives one line, not a million)."""
    problems: dict[str, tuple[str, str]] = {}
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            problems.setdefault("depth", (path, f"nested more than {max_depth} levels deep"))
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    problems.setdefault("key", (path, f"key {key!r} is not a string"))
                    continue
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                stack.append((child, f"{path}[{index}]", depth + 1))
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                problems.setdefault("unicode", (path, f"is not valid Unicode (a lone "
                                                      f"surrogate at position {exc.start})"))
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if item.bit_length() > MAX_INT_BITS:
                problems.setdefault("int", (path, f"an integer of {item.bit_length()} bits; "
                                                  f"the limit is {MAX_INT_BITS}"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                problems.setdefault("float", (path, f"{item} is not a JSON number"))
        else:
            problems.setdefault(f"type:{type(item).__name__}", (
                path, f"a {type(item).__name__} is not JSON (use objects, lists, strings, "
                      "numbers, true/false or null)"))
    return sorted(problems.values())


#: Values a tool may return besides plain JSON, which its output schema turns into JSON
#: faithfully (pydantic models and dataclasses are walked into).
_FAITHFUL = (datetime.date, datetime.time, datetime.timedelta, uuid.UUID, decimal.Decimal,
             enum.Enum)


def unfaithful(value: Any) -> str | None:
    """Where ``value`` holds something a serializer would change without a word (NaN or
    Infinity to null, bytes to text, an object to its fields or its repr), and what, or
    None."""
    stack: list[tuple[Any, str]] = [(value, "output")]
    seen = 0
    while stack and seen < 1_000_000:
        item, path = stack.pop()
        seen += 1
        if isinstance(item, float) and not math.isfinite(item):
            return f"{path} is {item}, which JSON cannot carry"
        if hasattr(item, "model_dump"):
            item = item.model_dump()
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            item = dataclasses.asdict(item)
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}") for k, v in item.items())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
        elif not isinstance(item, (str, int, float, bool, type(None), *_FAITHFUL)):
            return f"{path} is a {type(item).__name__}, which is not JSON"
    return None


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (call after :func:`json_problems` found none)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8"))


def text_problem(text: str, max_bytes: int) -> str | None:
    """Why a text (a goal, a description) cannot be taken, or None."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (a lone surrogate at position {exc.start})"
    if size > max_bytes:
        return f"{size} bytes; the limit is {max_bytes}"
    return None
