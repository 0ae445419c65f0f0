"""iRODS registration, BioImage Archive deposit and DataCite (owned by the publish stages)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from microfair.config.core import Strict


class IrodsSettings(Strict):
    connection_id: str = "irods_default"
    home_group: str = Field("microfair", description="collection tree /<zone>/home/<group>/…")
    mode: Literal["put", "register"] = "put"
    resource: str | None = None


class BiostudiesSettings(Strict):
    connection_id: str = "biostudies_default"
    poll_seconds: float = Field(30.0, gt=0)


class DataciteSettings(Strict):
    connection_id: str = "datacite_default"
    prefix: str | None = None
    publisher: str | None = None
