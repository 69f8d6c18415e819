"""What every area of the settings is: a frozen pydantic model whose fields are named as
their variables are (``redis_url`` is ``CHORDAL_REDIS_URL``), so the flat names users set
never carry the area."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict

PREFIX = "CHORDAL_"
DAY = 86_400


class Area(BaseModel):
    """One area of :class:`~planner.settings.Settings`; its docstring's first line is the
    area's heading in docs/configuration.md and ``chordal config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def unset_means(text: str) -> JsonDict:
    """A field's ``json_schema_extra``: what its absence means, for the documentation
    (``None`` alone says less than "the Redis URL")."""
    return {"unset": text}
