"""An incremental reader of a plan being written: fed the ``submit_plan`` tool input as it
streams in (JSON text in pieces), it hands back each element of the top-level ``steps``
array as soon as that element's JSON closes. Pure: no I/O, no model, no engine.

Only the structure is tracked (nesting, strings, escapes), one character at a time, so
feeding costs O(length) in all; an element is parsed with ``json.loads`` once, when it
closes. Anything else in the plan (``goal``, ``max_replans``...) is left to the whole
plan's validation when the stream ends.
"""

from __future__ import annotations

import json
from typing import Any


class StepStream:
    """Feed JSON text with :meth:`feed`; each call returns the steps completed by it (each
    the parsed JSON value of one element of the top-level ``steps`` array)."""

    def __init__(self) -> None:
        self._buf: list[str] = []
        self._pos = 0            # characters consumed so far
        self._stack: list[str] = []   # open containers: '{' or '['
        self._in_string = False
        self._escape = False
        self._string: list[str] = []  # the string being read, at depth 1 (a key)
        self._last_key: str | None = None
        self._in_steps = False        # inside the top-level "steps" array
        self._element: list[str] | None = None  # the step element being read
        self.steps_seen = 0

    def feed(self, text: str) -> list[Any]:
        done: list[Any] = []
        for ch in text:
            self._pos += 1
            if self._element is not None:
                self._element.append(ch)
            if self._in_string:
                self._read_string(ch)
                continue
            if ch == '"':
                self._in_string = True
                self._string = []
            elif ch in "{[":
                self._open(ch)
            elif ch in "}]":
                element = self._close()
                if isinstance(element, dict):
                    done.append(element)
        return done

    def _read_string(self, ch: str) -> None:
        if self._escape:
            self._escape = False
        elif ch == "\\":
            self._escape = True
        elif ch == '"':
            self._in_string = False
            if len(self._stack) == 1:
                # A string at the top level of the plan object: a key, or a value whose
                # key is already read (then it names nothing that matters here).
                self._last_key = "".join(self._string)
            return
        if len(self._stack) == 1:
            self._string.append(ch)

    def _open(self, ch: str) -> None:
        depth = len(self._stack)
        if depth == 1 and ch == "[" and self._last_key == "steps":
            self._in_steps = True
        elif depth == 2 and self._in_steps and self._element is None:
            self._element = [ch]
        self._stack.append(ch)

    def _close(self) -> Any:
        if self._stack:
            self._stack.pop()
        depth = len(self._stack)
        if depth == 1 and self._in_steps:
            self._in_steps = False
            self._last_key = None
        if depth == 2 and self._in_steps and self._element is not None:
            raw, self._element = "".join(self._element), None
            self.steps_seen += 1
            try:
                return json.loads(raw)
            except ValueError:
                # Cannot happen with a well-formed stream; never dispatched, and the
                # whole plan's validation says what is wrong.
                return None
        return None
