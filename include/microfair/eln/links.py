"""The ``eln`` value of a sidecar (or of ``projects.<P>.eln``) and what it points at.

Accepted forms::

    eln: https://eln.example.org/experiments.php?mode=view&id=42     # an eLabFTW experiment
    eln: https://eln.example.org/database.php?mode=view&id=7         # an eLabFTW resource (item)
    eln: elabftw:42                                                   # an experiment, by id
    eln: {elabftw_id: 7, entity_type: items}
    eln: {url: "https://my.labguru.com/knowledge/experiments/123", system: labguru}
    eln: https://any.example.org/notebook/page                         # any other notebook: a link only
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

EntityType = Literal["experiments", "items"]
# eLabFTW's own pages for an entry: experiments.php (experiments) and database.php (resources, "items" in API v2).
_ELAB_PAGES = {"experiments.php": "experiments", "database.php": "items"}
_BARE = re.compile(r"^elabftw:(?:(?P<type>experiments|items)/)?(?P<id>\d+)$")


class ElnLink(BaseModel):
    """What the user wrote; ``url`` or ``elabftw_id`` is required."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str | None = Field(None, pattern=r"^https?://\S+$")
    elabftw_id: int | None = Field(None, gt=0)
    entity_type: EntityType = "experiments"
    system: str | None = Field(None, description="elabftw, labguru, ... (guessed from the address when empty)")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, int):
            return {"elabftw_id": value}
        if isinstance(value, str):
            text = value.strip()
            m = _BARE.match(text)
            if m:
                return {"elabftw_id": int(m["id"]), "entity_type": m["type"] or "experiments"}
            return {"url": text}
        return value

    @model_validator(mode="after")
    def _something(self) -> "ElnLink":
        if not self.url and self.elabftw_id is None:
            raise ValueError("an ELN link needs `url` or `elabftw_id`")
        return self


@dataclass(frozen=True)
class ElnRef:
    """A resolved link: ``system`` is ``elabftw`` when microfair can write back to it."""

    url: str | None
    system: str
    entity_type: EntityType | None = None
    entry_id: int | None = None
    source: str = "sidecar"

    @property
    def writable(self) -> bool:
        return self.system == "elabftw" and self.entry_id is not None

    @property
    def label(self) -> str:
        return self.url or f"eLabFTW {self.entity_type} {self.entry_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _elabftw_entry(url: str) -> tuple[EntityType, int] | None:
    parts = urlsplit(url)
    page = parts.path.rsplit("/", 1)[-1]
    ids = parse_qs(parts.query).get("id")
    if page in _ELAB_PAGES and ids and ids[0].isdigit():
        return _ELAB_PAGES[page], int(ids[0])  # type: ignore[return-value]
    return None


def entry_url(base_url: str, entity_type: str, entry_id: int) -> str:
    page = next(p for p, t in _ELAB_PAGES.items() if t == entity_type)
    return f"{base_url.rstrip('/')}/{page}?mode=view&id={entry_id}"


def resolve_link(link: ElnLink | str | dict[str, Any] | None, *, base_url: str | None = None,
                 source: str = "sidecar") -> ElnRef | None:
    """The :class:`ElnRef` of a sidecar's or project's ``eln`` value (None when there is none)."""
    if link is None or link == "":
        return None
    link = link if isinstance(link, ElnLink) else ElnLink.model_validate(link)
    if link.elabftw_id is not None:
        url = link.url or (entry_url(base_url, link.entity_type, link.elabftw_id) if base_url else None)
        return ElnRef(url, "elabftw", link.entity_type, link.elabftw_id, source)
    assert link.url is not None
    found = _elabftw_entry(link.url)
    if found and link.system in (None, "elabftw"):
        return ElnRef(link.url, "elabftw", found[0], found[1], source)
    host = urlsplit(link.url).hostname or ""
    system = link.system or ("labguru" if "labguru" in host else "other")
    return ElnRef(link.url, system, None, None, source)
