"""The run store's Lua scripts: package data (``planner/store/lua``), read once.

A run-store script is ``lib.lua`` (the shared helpers: the clock, the "a step is final"
rule, the event writer) followed by its own file. Redis caches scripts by their SHA, so
each is sent in full only the first time a server sees it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

#: The scripts that run on a run's keys (each gets ``lib.lua`` in front of it).
RUN_SCRIPTS = ("begin_step", "finish_step", "fail_step", "retry_step", "start_run",
               "finish_run", "install_plan", "flag_failure", "set_status",
               "release_step", "retry_run", "create_run", "mark_dispatched",
               "reclaim_step", "renew_leases", "record_repair", "note_stale", "live_task",
               "callback_event", "begin_turn", "record_turn", "begin_call", "finish_call",
               "cancel_early", "note_written", "submit_run")
#: Scripts made of others: each part is put in front of the script's own file as a
#: function of (KEYS, ARGV), so one call does what the parts do, written once.
COMPOSED = {"submit_run": ("create_run", "install_plan", "set_status", "start_run",
                           "mark_dispatched")}


@cache
def source(name: str) -> str:
    text = _file(name)
    # A part's KEYS and ARGV are its function's parameters: they shadow the script's own.
    parts = "".join(f"local function {part}(KEYS, ARGV)\n{_file(part)}\nend\n"
                    for part in COMPOSED.get(name, ()))
    return source("lib") + "\n" + parts + text if name in RUN_SCRIPTS else text


def _file(name: str) -> str:
    return resources.files("planner.store").joinpath(f"lua/{name}.lua").read_text("utf-8")


def register(client: redis.Redis, name: str) -> Script:
    """The script ``name`` bound to ``client``."""
    return client.register_script(source(name))
