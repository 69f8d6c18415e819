"""What keeps the run store cluster-safe, checked on the code: every run-store script is
given keys of one run only (one hash tag: one slot), every other script's keys share a
slot, and a run's keys all hash to one slot. (tests/cluster/ runs plans on a real cluster,
which refuses a script or a MULTI that crosses slots.)"""

from __future__ import annotations

import ast
from pathlib import Path

from redis.crc import key_slot

from planner.store import keys
from planner.store.keys import RunKeys

ROOT = Path(__file__).resolve().parents[1]


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Calls of ``<x>.<name>(...)`` in the run store's modules."""
    found = []
    for path in sorted((ROOT / "planner" / "store").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == name:
                found.append((path, node))
    return found


def test_a_runs_keys_share_one_slot() -> None:
    for run_id in ("6b15be9fabdd40ccc58c", "a-b", "x{y}z"):
        assert len({key_slot(k.encode()) for k in RunKeys(run_id).all()}) == 1


def test_every_run_store_script_takes_one_runs_keys() -> None:
    calls = _calls("_run")
    assert len(calls) >= 20  # every transition of a run (agents.py: through _agent)
    for path, call in calls:
        if len(call.args) < 2:
            continue  # the definition's own forwarding (base.py), not a script call
        given = call.args[1]
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        assert isinstance(given, ast.List), where
        for key in given.elts:
            # k.<part>, k = RunKeys(run_id): every key of one run
            assert isinstance(key, ast.Attribute) and isinstance(key.value, ast.Name) \
                and key.value.id == "k", where


def test_every_other_scripts_keys_share_a_slot() -> None:
    named = {name: getattr(keys, name) for name in dir(keys) if name.isupper()
             and isinstance(getattr(keys, name), str)}
    for path, call in _calls_with_keys():
        given = next((kw.value for kw in call.keywords if kw.arg == "keys"), None)
        if not isinstance(given, ast.List) or len(given.elts) < 2:
            continue
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        if all(isinstance(k, ast.Name) and k.id in named for k in given.elts):
            slots = {key_slot(named[k.id].encode()) for k in given.elts
                     if isinstance(k, ast.Name)}
            assert len(slots) == 1, where
        else:  # one run's keys
            assert all(isinstance(k, ast.Attribute) and isinstance(k.value, ast.Name)
                       and k.value.id == "k" for k in given.elts), where


def _calls_with_keys() -> list[tuple[Path, ast.Call]]:
    """Every call given ``keys=[...]`` (a script's) anywhere in planner/."""
    found = []
    for path in sorted((ROOT / "planner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and any(kw.arg == "keys" for kw in node.keywords):
                found.append((path, node))
    return found
