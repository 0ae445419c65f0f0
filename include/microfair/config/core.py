"""Core facility settings: storage, ledger, landing zones, naming, conversion, QC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from microfair.eln.links import ElnLink


class Strict(BaseModel):
    """Base for every settings block: unknown keys are an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class StorageRoots(Strict):
    """Where each storage tier lives on the facility server."""

    raw: Path = Field(description="Read-only raw copies, as Project/Study/Experiment/<file>")
    converted: Path = Field(description="OME-Zarr conversions, same tree as raw")
    quarantine: Path = Field(description="Files that could not be ingested, with a reason file")
    reports: Path = Field(description="Metadata records, QC reports and thumbnails")


class LandingZone(Strict):
    """A per-microscope drop folder on (or exported from) the acquisition PC."""

    microscope: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: Path
    stability_seconds: float = Field(60.0, ge=0, description="size and mtime unchanged this long")
    completion_marker: str | None = Field(
        None,
        description="if set, a file is complete only when '<file><marker>' exists (e.g. '.done')",
    )
    tree: Literal["folders", "name"] = Field(
        "folders",
        description=(
            "how Project/Study/Experiment is derived: 'folders' = the file's folders below the "
            "landing zone (missing levels come from the name), 'name' = name tokens only"
        ),
    )


class NamingPolicy(Strict):
    policy: Literal["flag", "quarantine"] = "flag"
    max_length: int = Field(128, gt=10, le=255)
    types: list[str] = Field(default_factory=lambda: ["RAW", "processed"])


class QcThresholds(Strict):
    saturation_max_fraction: float = Field(0.01, ge=0, le=1)
    snr_min: float = Field(3.0, ge=0)
    focus_min: float = Field(0.0, ge=0, description="minimum normalised focus score of the best plane")
    dynamic_range_min_fraction: float = Field(
        0.05, ge=0, le=1, description="used range / dtype range below this is flagged"
    )
    thumbnail_size: int = Field(256, ge=32, le=2048)
    histogram_bins: int = Field(256, ge=8, le=65536)
    nyquist_oversampling_factor: float = Field(
        3.0, gt=1, description="flag an axis sampled more than this many times finer than Nyquist (wasted storage)")
    nyquist_undersampling_tolerance: float = Field(
        1.0, ge=1, description="flag an axis whose pixel exceeds the Nyquist distance by more than this factor")


class ConversionSettings(Strict):
    ngff_version: Literal["0.4", "0.5"] = "0.5"
    chunk_xy: int = Field(512, ge=16)
    chunk_z: int = Field(1, ge=1)
    min_level_size: int = Field(256, ge=16, description="stop the pyramid when Y and X fit this")
    max_levels: int = Field(8, ge=1)
    compressor: Literal["zstd", "blosc-lz4", "none"] = "zstd"
    compression_level: int = Field(3, ge=0, le=22)
    memory_limit_mb: int = Field(
        1500, ge=128, description="peak resident memory budget for one conversion"
    )
    shard_target_bytes: int = Field(
        16 << 20, ge=0, description="NGFF 0.5: about this many bytes per shard file (0: no sharding)"
    )
    engine: Literal["auto", "planes", "dask"] = Field(
        "auto", description="auto: one task per unit of whole planes through every level (microfair.convert.planes) "
                            "when a unit fits memory_limit_mb and no dask cluster is used, else the dask slab graph")
    verify_planes: Literal["all"] | Annotated[int, Field(ge=1)] = Field(
        "all", description="pixel-exact proof: read back and compare every plane of level 0, or N planes per scene"
    )


class DaskSettings(Strict):
    connection_id: str = Field(
        "dask_default",
        description="Airflow connection naming a dask scheduler (host:port); a local cluster if absent",
    )
    n_workers: int | None = Field(None, ge=1, description="local cluster workers (default: cores)")
    threads_per_worker: int = Field(1, ge=1)
    local_cluster: bool = Field(
        False, description="without the connection: start a local dask cluster of worker processes for the "
                           "conversion (true), or convert in the task's own process with the plane engine (false)")


class ProjectDefaults(Strict):
    """Per-project defaults used when no sidecar says otherwise (Study, Biosample, Specimen)."""

    title: str | None = None
    description: str | None = None
    owner: str | None = None
    group: str | None = None
    license: str = "CC-BY-4.0"
    keywords: list[str] = Field(default_factory=list)
    organism: str | None = None
    ncbi_taxon: str | None = None
    biological_entity: str | None = None
    sample_preparation: str | None = None
    imaging_method: str | None = None
    eln: ElnLink | None = Field(None, description="the project's lab notebook entry, when a sidecar names none "
                                                  "(an eLabFTW address, elabftw:<id>, or any URL)")


class FacilityInfo(Strict):
    name: str
    institution: str | None = None
    contact_email: str | None = None
    ror: str | None = Field(None, description="ROR identifier of the institution")

    @field_validator("name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


class LedgerSettings(Strict):
    url: str = Field(description="SQLAlchemy URL: sqlite:///… by default, postgresql+psycopg2://… at scale")

    @model_validator(mode="after")
    def _scheme(self) -> "LedgerSettings":
        if "://" not in self.url:
            raise ValueError(f"not an SQLAlchemy URL: {self.url!r}")
        return self
