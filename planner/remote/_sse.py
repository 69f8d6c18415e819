"""A run's event stream as the server sends it (the text/event-stream format), read one
line at a time into :class:`RunEvent`\\ s. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from planner.remote._wire import Incompatible
from planner.store.records import RunEvent


@dataclass
class Sse:
    """An event stream's parser, fed one line at a time."""

    data: list[str] = field(default_factory=list)
    event_id: str | None = None
    kind: str | None = None

    def feed(self, line: str) -> RunEvent | None:
        """The event this line completes, if any."""
        if line == "":
            event = None
            if self.data:
                try:
                    event = RunEvent.model_validate_json("\n".join(self.data))
                except ValidationError as exc:
                    raise Incompatible(f"the server sent an event that is not a run "
                                       f"event: {exc.errors()[0]['msg']}") from None
                if self.event_id and not event.id:
                    event.id = self.event_id
            self.data, self.kind = [], None
            return event
        if line.startswith(":"):
            return None  # a comment: the keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self.data.append(value)
        elif name == "id":
            self.event_id = value
        elif name == "event":
            self.kind = value
        return None
