"""Chordal over HTTP: clients of ``chordal serve`` for apps that have neither Redis access
nor the tool modules (``Client.from_url``, ``AsyncClient``)."""
