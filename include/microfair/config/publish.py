"""iRODS registration, BioImage Archive deposit and DataCite (owned by the publish stages).

Secrets are never here: they come from the Airflow connections named below.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from microfair.config.core import Strict


class IrodsSettings(Strict):
    connection_id: str = "irods_default"
    home_group: str = Field("microfair", description="collection tree /<zone>/home/<group>/…; a project's "
                                                     "`group` (projects.<P>.group) takes precedence")
    mode: Literal["put", "register"] = Field(
        "put", description="put: copy with a server-side checksum; register: register the files in place "
                           "(the facility storage must be visible to the iRODS server under the same path)")
    resource: str | None = Field(None, description="destination resource; the server default when empty")
    owner: str | None = Field(None, description="iRODS user who gets `own`; the connecting user when empty")
    include_zarr: bool = Field(True, description="also transfer the OME-Zarr next to the raw file")
    avu_prefix: str = Field("microfair", pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
                            description="namespace of every AVU attribute microfair writes")


class BiostudiesSettings(Strict):
    connection_id: str = "biostudies_default"
    poll_seconds: float = Field(30.0, gt=0)
    timeout_hours: float = Field(24.0, gt=0, description="give up waiting for POST_PROCESSED after this")
    ftp_threshold_mb: float = Field(
        100.0, ge=0, description="files larger than this go through FTP, smaller ones through HTTP multipart")
    retries: int = Field(5, ge=0, description="HTTP retries on 5xx and connection resets")
    backoff_seconds: float = Field(2.0, ge=0, description="first back-off delay (doubles each retry)")
    release_in_days: int = Field(180, ge=0, le=730, description="release date when the study file gives none")


class DataciteSettings(Strict):
    connection_id: str = "datacite_default"
    prefix: str | None = None
    publisher: str | None = None
