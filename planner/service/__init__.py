"""The planner as a service: an HTTP API (FastAPI) with live events and a run page, over
the same run store and broker as the CLI and the Python client (``chordal serve``)."""
