"""The demo's travel agency: an MCP server (stdio) with four tools, ``flights``,
``hotels``, ``availability`` and ``transfer``, answering from ``agency.json``.

Workers start it themselves, one per worker process, from ``examples/travel/mcp.json``
(``CHORDAL_MCP_CONFIG``; its paths are relative to the repository's root, where workers
run); its tools reach the planner as ``travel.flights``, ``travel.hotels``,
``travel.availability`` and ``travel.transfer``, with the input and output schemas drawn
from the signatures below.
Each answer takes a moment, as a real booking API's would, so the run shows the lookups
running side by side.

    python examples/travel/agency.py        # speaks MCP on stdin/stdout
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

DATA = json.loads((Path(__file__).parent / "agency.json").read_text("utf-8"))

mcp = MCPServer("travel", log_level="WARNING")


class Flight(BaseModel):
    carrier: str
    origin: str = Field(description="IATA code of the departure airport")
    destination: str = Field(description="IATA code of the arrival airport")
    depart: str = Field(description="outbound departure, local time")
    back: str = Field(description="return departure, local time")
    passengers: int
    price_eur: int = Field(description="total for every passenger, both ways")


class Hotel(BaseModel):
    name: str
    district: str
    price_per_night: int = Field(description="EUR per room and night")
    rooms_left: int


class Hotels(BaseModel):
    city: str
    nights: int
    hotels: list[Hotel] = Field(description="with free rooms, cheapest first")


def _city(code_or_name: str, table: dict[str, object]) -> str:
    for key in table:
        if key.lower() == code_or_name.strip().lower():
            return key
    raise ToolError(f"unknown place {code_or_name!r}; this agency knows {', '.join(table)}")


@mcp.tool()
def flights(origin: str, destination: str, passengers: int = 1) -> Flight:
    """The cheapest return flight for a weekend (out Friday evening, back Sunday evening)
    between two airports given as IATA codes (LHR, CDG, LIS, OPO, BCN)."""
    if not 1 <= passengers <= 9:
        raise ToolError("passengers: 1 to 9 per booking")
    routes = DATA["flights"]
    dest = _city(destination, routes)
    fares = routes[dest]
    start = origin.strip().upper()
    if start not in fares["from"]:
        raise ToolError(f"no flights from {origin!r} to {dest}; from: "
                        f"{', '.join(fares['from'])}")
    time.sleep(1.0)
    fare = fares["from"][start]
    return Flight(carrier=fare["carrier"], origin=start, destination=dest,
                  depart=fare["depart"], back=fare["back"], passengers=passengers,
                  price_eur=fare["price_pp"] * passengers)


@mcp.tool()
def hotels(city: str, nights: int = 2, guests: int = 2, max_price: int | None = None
           ) -> Hotels:
    """Hotels with a free room for the guests in a city (Lisbon, Porto, Barcelona), cheapest
    first; max_price caps the EUR price per night."""
    if not 1 <= nights <= 30:
        raise ToolError("nights: 1 to 30")
    name = _city(city, DATA["hotels"])
    time.sleep(0.6)
    found = [Hotel(**h) for h in DATA["hotels"][name]
             if h["sleeps"] >= guests and (max_price is None or h["price_per_night"] <= max_price)]
    return Hotels(city=name, nights=nights,
                  hotels=sorted(found, key=lambda h: h.price_per_night))


class Availability(BaseModel):
    hotel: str
    available: bool = Field(description="a room for the guests on every night asked")
    rooms_left: int = Field(description="rooms free on those nights")
    price_total: int = Field(description="EUR for one room, every night")


class Transfer(BaseModel):
    hotel: str
    airport: str
    minutes: int = Field(description="by taxi, door to door")


def _hotel(name: str) -> dict[str, Any]:
    hotels: list[dict[str, Any]] = [h for city in DATA["hotels"].values() for h in city]
    for h in hotels:
        if h["name"].lower() == name.strip().lower():
            return h
    known = ", ".join(h["name"] for h in hotels)
    raise ToolError(f"unknown hotel {name!r}; this agency books {known}")


@mcp.tool()
def availability(hotel: str, nights: int = 2, guests: int = 2) -> Availability:
    """Whether a hotel (named as travel.hotels lists it) has a room for the guests on the
    weekend's nights (from Friday), and what the stay costs."""
    if not 1 <= nights <= 30:
        raise ToolError("nights: 1 to 30")
    h = _hotel(hotel)
    time.sleep(0.5)
    free = h["weekend_rooms"] if h["sleeps"] >= guests else 0
    return Availability(hotel=h["name"], available=free > 0, rooms_left=free,
                        price_total=h["price_per_night"] * nights)


@mcp.tool()
def transfer(hotel: str, airport: str) -> Transfer:
    """How long a taxi takes from an airport (IATA code) to a hotel."""
    h = _hotel(hotel)
    times: dict[str, int] = h["from_airport"]
    code = airport.strip().upper()
    if code not in times:
        raise ToolError(f"{h['name']} is not served from {airport!r}; from: {', '.join(times)}")
    time.sleep(0.3)
    return Transfer(hotel=h["name"], airport=code, minutes=times[code])


if __name__ == "__main__":
    mcp.run("stdio")
