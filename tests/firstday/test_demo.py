"""The README's main command, `./scripts/demo`, exactly as written (on a Redis of its own;
its report is the one the README's tour shows),
and the demo's real tools: the travel agency (an MCP server over stdio) and the weather
server (HTTP, behind a token) that its plan calls."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import redis

from planner.errors import PermanentError
from planner.settings import Settings
from planner.tools.mcp import mcp_tools
from tests import redis_server
from tests.firstday.helpers import ROOT, chordal, user_env
from tests.integration.conftest import _free_port
from tests.test_readme import TOUR, tour_rows
from tests.test_readme import block as readme_block
from tests.travel import Travel, demo_env, travel_services

DB = 24


@pytest.fixture(scope="module")
def redis_url() -> str:
    """A database of this module's own, flushed."""
    for db in range(DB, DB + 1):
        redis.Redis.from_url(redis_server.url(db)).flushdb()
    return redis_server.url(DB)


def free(port: int) -> bool:
    """Nothing listens on the port (connections closed a moment ago may linger in
    TIME_WAIT; a server with SO_REUSEADDR, as the weather server, binds anyway)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_demo_runs_as_written(redis_url: str):
    # The weather server on a free port (8765 may be another demo's): the script points
    # the recorded plan at it.
    port = _free_port()
    env = user_env(CHORDAL_REDIS_URL=redis_url, COLUMNS="200",
                   DEMO_WEATHER_PORT=str(port))
    result = subprocess.run(["./scripts/demo"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the model is SCRIPTED" in result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "succeeded" in lines["run"] and "plan v2 (1 replan; replaced: weather)" in lines["run"]
    # The agency's answers, read by $refs, and the weather server's 503, retried once.
    assert '"price_eur": 212' in lines["flights"] and '"Casa do Largo"' in lines["hotels"]
    # The agent step: availability of both hotels at once, then the free one's transfer,
    # then its answer, which hotel_cost reads; the total still fits the budget.
    assert lines["pick_hotel"].split()[1:3] == ["succeeded", "1"]
    assert '"Casa do Largo"' in lines["pick_hotel"]
    assert " ".join(lines["pick_hotel:"].split()) == \
        "pick_hotel: 3 turns · 3 tool calls · answered"
    assert "236" in lines["hotel_cost"]
    assert lines["total"].split()[1:3] == ["succeeded", "1"] and "448" in lines["total"]
    assert "failed      2" in lines["weather"] and "answered 503" in lines["weather"]
    backup = lines["weather_backup"]
    assert backup.split()[1] == "succeeded" and '"status": 200' in backup
    assert "answer: Your Lisbon weekend fits the budget" in result.stdout
    # The README's tour shows this report: the same rows, header and model line.
    tour = readme_block(TOUR)
    assert tour_rows(result.stdout) == tour_rows(tour)
    header = " ".join(tour.splitlines()[1].split())
    assert header in {" ".join(line.split()) for line in result.stdout.splitlines()}
    assert re.search(r"^model: \d+ call\(s\), \d+ tokens", result.stdout, flags=re.M)
    # The weather server went with the demo; its token was never shown.
    assert free(port)
    assert not re.search(r"Bearer (?!\$\{weather\})", result.stdout + result.stderr)


def test_the_demo_lets_plans_reach_its_weather_port_only(redis_url: str,
                                                        tmp_path: Path):
    """The demo's allow-list names the weather server's port, not every port of 127.0.0.1:
    a plan's http_request to the run store's Redis is refused, naming the setting."""
    port, redis_port = _free_port(), int(redis_url.rsplit(":", 1)[1].split("/")[0])
    headers = {"Authorization": "Bearer ${weather}"}
    plan = {"goal": "weekend probe", "steps": [
        {"id": "weather", "tool": "http_request", "on_failure": "skip",
         "args": {"url": f"http://127.0.0.1:{port}/backup/v1/forecast",
                  "params": {"city": "Lisbon"}, "secret_headers": headers}},
        {"id": "redis", "tool": "http_request", "on_failure": "skip",
         "args": {"url": f"http://127.0.0.1:{redis_port}/", "method": "POST",
                  "json": "FLUSHALL"}}]}
    script = tmp_path / "model.json"
    script.write_text(json.dumps({"responses": [
        {"role": "planner", "content": [{"type": "tool_use", "id": "p", "name": "submit_plan",
                                         "input": plan}]},
        {"role": "synthesizer", "content": [{"type": "text", "text": "done"}]}]}))
    env = user_env(CHORDAL_REDIS_URL=redis_url, COLUMNS="250",
                   DEMO_WEATHER_PORT=str(port), CHORDAL_LLM=f"scripted:{script}")
    result = subprocess.run(["./scripts/demo", "weekend probe"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240)
    out = result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["weather"].split()[1] == "succeeded", out[-3000:]
    assert lines["redis"].split()[1] == "skipped", out[-3000:]  # failed for good
    assert f"port {redis_port} of host '127.0.0.1' is not allowed" in out, out[-3000:]
    assert "CHORDAL_HTTP_ALLOW" in out


def test_the_demo_says_when_its_port_is_taken(redis_url: str):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = user_env(CHORDAL_REDIS_URL=redis_url, DEMO_WEATHER_PORT=str(port))
        result = subprocess.run(["./scripts/demo"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
    assert result.returncode == 2
    assert f"weather: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "DEMO_WEATHER_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_weather_server_wants_its_token_and_a_known_city():
    with travel_services(_free_port()) as travel:
        url = f"{travel.url}/backup/v1/forecast"
        auth = {"Authorization": f"Bearer {travel.token}"}
        assert httpx.get(url, params={"city": "Lisbon"}).status_code == 401
        assert httpx.get(url, params={"city": "Lisbon"},
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(url, params={"city": "lisbon", "days": 2}, headers=auth)
        assert ok.status_code == 200 and ok.json()["forecast"] == "sunny, 22C"
        unknown = httpx.get(url, params={"city": "Atlantis"}, headers=auth)
        assert unknown.status_code == 404 and "Atlantis" in unknown.json()["error"]
        assert httpx.get(url, headers=auth).status_code == 400
        days = httpx.get(url, params={"city": "Lisbon", "days": "abc"}, headers=auth)
        assert days.status_code == 400 and "days" in days.json()["error"]
        down = httpx.get(f"{travel.url}/primary/v1/forecast", params={"city": "Lisbon"},
                         headers=auth, timeout=10)
        assert down.status_code == 503 and down.headers["retry-after"] == "1"


def test_the_weather_server_refuses_to_start_without_a_token():
    env = {k: v for k, v in os.environ.items() if k != "WEATHER_API_TOKEN"}
    result = subprocess.run(["python", "examples/travel/weather.py", "--port", "0"],
                            cwd=ROOT, env={**env, **demo_env("x")}, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "set WEATHER_API_TOKEN" in result.stderr


@pytest.fixture
def agency(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.chdir(ROOT)
    env = demo_env("unused-token-0123456789")
    monkeypatch.setenv("PATH", env["PATH"])
    tools = mcp_tools(Settings.from_env({"CHORDAL_MCP_CONFIG": env["CHORDAL_MCP_CONFIG"]}))
    return {t.name: t for t in tools}


def test_the_agency_is_an_mcp_server_with_typed_tools(agency: dict[str, object]):
    assert set(agency) == {"travel.flights", "travel.hotels", "travel.availability",
                           "travel.transfer"}
    flights = agency["travel.flights"]
    assert "IATA" in flights.description  # type: ignore[attr-defined]
    assert flights.output_schema["properties"]["price_eur"]["type"] == "integer"  # type: ignore[attr-defined]
    assert flights.fn(origin="lhr", destination="LIS", passengers=2)["price_eur"] == 212  # type: ignore[attr-defined]
    hotels = agency["travel.hotels"].fn(city="lisbon", guests=2)  # type: ignore[attr-defined]
    assert [h["name"] for h in hotels["hotels"]] == ["Casa do Largo", "Hotel Baixa"]
    with pytest.raises(PermanentError, match="unknown place 'Atlantis'"):
        agency["travel.hotels"].fn(city="Atlantis")  # type: ignore[attr-defined]
    # The agent step's tools: a room on the weekend's nights, and the taxi from the airport.
    free = agency["travel.availability"].fn(hotel="casa do largo", nights=2)  # type: ignore[attr-defined]
    assert free == {"hotel": "Casa do Largo", "available": True, "rooms_left": 2,
                    "price_total": 236}
    full = agency["travel.availability"].fn(hotel="Hotel Baixa")  # type: ignore[attr-defined]
    assert full["available"] is False and full["rooms_left"] == 0
    taxi = agency["travel.transfer"].fn(hotel="Casa do Largo", airport="lis")  # type: ignore[attr-defined]
    assert taxi == {"hotel": "Casa do Largo", "airport": "LIS", "minutes": 25}
    with pytest.raises(PermanentError, match="unknown hotel 'Ritz'"):
        agency["travel.transfer"].fn(hotel="Ritz", airport="LIS")  # type: ignore[attr-defined]


def test_chordal_tools_lists_the_agency():
    result = chordal(ROOT, "tools", env=user_env(**demo_env("unused-token-0123456789")))
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "travel.flights chordal 3 30s The cheapest return flight" in text
    assert "(origin: string, destination: string, passengers: integer = 1) -> Flight" in text
    assert "(city: string, nights: integer = 2, guests: integer = 2," in text


def test_the_docs_set_the_demo_up_by_hand(redis_url: str, tmp_path: Path):
    """docs/cli.md's by-hand block, line by line (the weather server on a free port, the
    recorded plan pointed at it), then the weather server stopped whatever happens."""
    doc = (ROOT / "docs" / "cli.md").read_text("utf-8")
    [block] = [b for b in re.findall(r"```\n(.*?)```", doc, flags=re.S)
               if "examples/travel/weather.py &" in b]
    port = _free_port()
    moved = Travel(port, "", {}).script(tmp_path / "model.json")
    block = block.replace("weather.py &", f"weather.py --port {port} &").replace(
        "examples/scripted/weekend-getaway.json", str(moved)).replace(
        "127.0.0.1:8765", f"127.0.0.1:{port}")
    script = f"set -e\ntrap 'kill $! 2>/dev/null || true' EXIT\n{block}"
    env = user_env(CHORDAL_REDIS_URL=redis_url, **{"PATH": demo_env("")["PATH"]})
    process = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr[-3000:]
    assert stdout.startswith(f"ready {port}\n")
    assert "plan v2 (1 replan; replaced: weather)" in stdout
    assert "answer: Your Lisbon weekend fits the budget" in stdout
    assert free(port)
