"""A small JSON-LD graph under construction: entities by ``@id``, merged when added twice."""

from __future__ import annotations

from typing import Any

Entity = dict[str, Any]


class Graph:
    def __init__(self) -> None:
        self.entities: dict[str, Entity] = {}

    def add(self, entity: Entity | None) -> Entity | None:
        if entity is None:
            return None
        have = self.entities.get(entity["@id"])
        if have is None:
            self.entities[entity["@id"]] = entity
            return entity
        for k, v in entity.items():
            have.setdefault(k, v)
        return have

    def __contains__(self, entity_id: str) -> bool:
        return entity_id in self.entities

    def get(self, entity_id: str) -> Entity | None:
        return self.entities.get(entity_id)

    def of_type(self, type_: str) -> list[Entity]:
        return [e for e in self.entities.values() if type_ in _types(e)]


def _types(e: Entity) -> list[str]:
    t = e.get("@type", [])
    return [t] if isinstance(t, str) else list(t)
