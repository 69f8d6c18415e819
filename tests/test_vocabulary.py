"""One vocabulary (planner/vocabulary.py): the Lua scripts, the run page's JavaScript and CSS,
the terminal view and the Python code say no event type or status it does not, and each of
its words is written or shown where it should be. Read from the sources: no Redis needed."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

from planner import vocabulary
from planner.cli.view import STYLE
from planner.store.records import RepairKind
from planner.vocabulary import (
    EARNED_STEP,
    FINAL_STEP,
    MOVABLE_RUN,
    AttemptStatus,
    CallStatus,
    EventType,
    RunStatus,
    StepStatus,
    TurnKind,
    moved,
)

ROOT = Path(__file__).resolve().parent.parent
PLANNER = ROOT / "planner"
LUA = sorted((PLANNER / "store" / "lua").glob("*.lua"))
PAGE = PLANNER / "service" / "page"
CSS = (PAGE / "app.css").read_text(encoding="utf-8")
SCRIPTS = sorted(p for p in PAGE.glob("*.js") if p.name != "vocabulary.js")

STATUSES = {*RunStatus, *StepStatus, *AttemptStatus}
#: Words Lua compares that are not statuses: renew_leases' mode, the repair kinds, a
#: turn record's state (thinking, then done), finish_call's outcome `retry`, and Lua's
#: type names (`type(x) == 'string'`).
NOT_STATUSES = {"take", *typing.get_args(RepairKind), "done", "retry", "string", "table"}
#: The scripts of agent steps (planner/store/agents.py): their records hold turn kinds and
#: call statuses, not attempts'.
AGENT_LUA = {"begin_turn.lua", "record_turn.lua", "begin_call.lua", "finish_call.lua"}
#: The status of an `agent.tool_call` event of a call that waits for its retry (the call
#: itself is stored `pending`; a step's retry names it in the type, `step.retrying`).
CALL_RETRYING = "retrying"
#: The statuses an event of each agent type may carry; every other event carries a run's
#: or a step's.
EVENT_STATUSES = {EventType.AGENT_TURN: set(TurnKind),
                  EventType.AGENT_TOOL_CALL: {*CallStatus, CALL_RETRYING}}


def lua(path: Path) -> str:
    # Comments out: they quote words freely.
    return re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))


def test_the_pages_vocabulary_module_is_generated_from_the_enums():
    assert vocabulary.JS_PATH.read_text(encoding="utf-8") == vocabulary.javascript(), \
        "planner/service/page/vocabulary.js is stale: run `python -m planner.vocabulary`"


def test_every_event_the_lua_writes_is_an_event_type_and_every_type_is_written():
    written: set[str] = set()
    for path in LUA:
        text = lua(path)
        # event(stream, type, step, status, data): the status may be an expression.
        for kind, status in re.findall(r"event\((?:KEYS\[\d\]|\w+), '([^']*)', [^,]+, ([^,]+),",
                                       text):
            assert kind in set(EventType), f"{path.name}: event type {kind!r}"
            allowed = EVENT_STATUSES.get(EventType(kind), {*RunStatus, *StepStatus})
            for word in re.findall(r"'([^']*)'", status):
                assert word in allowed, f"{path.name}: {kind} status {word!r}"
            written.add(kind)
        # call_event(stream, step, status, ...): lib.lua's writer of `agent.tool_call`.
        for word in re.findall(r"call_event\((?:KEYS\[\d\]|\w+), \w+, '([^']*)',", text):
            assert word in EVENT_STATUSES[EventType.AGENT_TOOL_CALL], \
                f"{path.name}: agent.tool_call status {word!r}"
        written.update(re.findall(r"'type', '([^']*)'", text))
    assert written <= set(EventType)
    # set_status.lua writes `run.<status>`: one event type per status it moves a run to.
    assert "'run.' .. ARGV[2]" in lua(PLANNER / "store" / "lua" / "set_status.lua")
    written.update(moved(s) for s in MOVABLE_RUN)
    # callback_event.lua writes the type it is given: the callback delivery's.
    callbacks = (PLANNER / "callbacks.py").read_text(encoding="utf-8")
    written.update(EventType[name] for name in re.findall(r"EventType\.(\w+)", callbacks))
    assert set(EventType) == written, f"never written: {set(EventType) - written}"


def test_the_lua_compares_and_writes_only_statuses_of_the_vocabulary():
    for path in LUA:
        text = lua(path)
        for word in re.findall(r"[=~]= '([a-z_]+)'", text):
            assert word in STATUSES | NOT_STATUSES | {*TurnKind, *CallStatus}, \
                f"{path.name}: compares {word!r}"
        for word in re.findall(r"\.status', '([a-z_]+)'", text):
            assert word in set(StepStatus), f"{path.name}: a step set to {word!r}"
        for call in re.findall(r"'HSET', KEYS\[1\],[^)]*?'status', ([^,]+),", text, re.S):
            for word in re.findall(r"'([a-z_]+)'", call):
                assert word in set(RunStatus), f"{path.name}: a run set to {word!r}"
        for word in re.findall(r"\bstatus = '([a-z_]+)'", text):
            if path.name in AGENT_LUA:
                # A turn record is thinking, then done; a call's status is a CallStatus
                # (never `cancelled`: a report shows an ended step's pending calls so).
                assert word in {*CallStatus, "thinking", "done"} - {CallStatus.CANCELLED}, \
                    f"{path.name}: a call or turn set to {word!r}"
            else:
                assert word in set(AttemptStatus), f"{path.name}: an attempt set to {word!r}"


def test_the_lua_rules_of_final_and_earned_steps_are_the_vocabularys():
    lib = lua(PLANNER / "store" / "lua" / "lib.lua")
    body = re.search(r"local function is_final\(status\)(.*?)\nend", lib, re.S)
    assert body and set(re.findall(r"status == '([a-z_]+)'", body.group(1))) == FINAL_STEP
    install = lua(PLANNER / "store" / "lua" / "install_plan.lua")
    body = re.search(r"local function earned\(step\)(.*?)\nend", install, re.S)
    assert body and set(re.findall(r"s == '([a-z_]+)'", body.group(1))) == EARNED_STEP


def test_the_page_draws_every_status_and_no_other():
    for status in StepStatus:
        for rule in (f".node.s-{status} rect.box", f".bar.s-{status}", f".badge.s-{status}",
                     f".legend .sw.leg-{status}", f"--{status}-fill:", f"--{status}:"):
            assert rule in CSS, f"app.css has no {rule!r}"
    for status in {*RunStatus, *AttemptStatus}:
        assert re.search(rf"\.badge\.s-{status}\b[^{{]*\{{", CSS), f"no badge for {status!r}"
    drawn = set(re.findall(r"\.(?:s|leg)-([a-z_]+)", CSS))
    assert drawn - STATUSES == {"dropped"}, drawn - STATUSES  # the legend's dashed outline


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_the_page_scripts_name_statuses_and_events_from_the_vocabulary(path: Path):
    text = path.read_text(encoding="utf-8")
    words = STATUSES | set(EventType)
    for word in re.findall(r"[!=]==\s*'([^']*)'|'([^']*)'\s*[!=]==", text):
        said = word[0] or word[1]
        assert said not in words, f"{path.name} compares the literal {said!r}: use vocabulary.js"
    for names in re.findall(r"import \{([^}]*)\} from './vocabulary.js'", text):
        for name in (n.strip() for n in names.split(",")):
            assert re.search(rf"^export const {name} ", vocabulary.javascript(), re.M), name


def test_the_page_draws_every_call_status_and_names_every_turn_kind():
    for status in CallStatus:
        for rule in (f".callbar.c-{status}", f".calldot.c-{status}", f".cbadge.c-{status}"):
            assert rule in CSS, f"app.css has no {rule!r}"
    agent = (PAGE / "agent.js").read_text(encoding="utf-8")
    for kind in TurnKind:
        assert f"[TURN.{kind.name}]:" in agent, f"agent.js has no words for {kind!r}"


def test_the_terminal_view_colours_every_status():
    assert {*RunStatus, *StepStatus} <= set(STYLE)


def _status_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """``x.status == "..."`` and ``x.status in ("...", ...)`` with a string of a status."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if not any(isinstance(s, ast.Attribute) and s.attr == "status" for s in sides):
            continue
        for side in sides:
            items = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
            found += [(node.lineno, i.value) for i in items
                      if isinstance(i, ast.Constant) and i.value in STATUSES]
    return found


def test_python_compares_statuses_and_names_events_with_the_enums():
    events = set(EventType)
    for path in sorted([*PLANNER.rglob("*.py"), *(ROOT / "workers").rglob("*.py")]):
        name = path.relative_to(ROOT).as_posix()
        if name == "planner/vocabulary.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef |
                              ast.AsyncFunctionDef)
                and n.body and isinstance(n.body[0], ast.Expr)}
        said = [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)
                and n.value in events and id(n) not in docs]
        assert not said, f"{name}: event types as strings {said}: use EventType"
        assert not _status_literals(tree), f"{name}: {_status_literals(tree)}"
