"""The user's sidecar file ``<name>.meta.yaml``: what the image file cannot say.

It sits next to the acquisition (``2024-03-01_TNT_..._v01.czi`` ->
``2024-03-01_TNT_..._v01.meta.yaml``) and follows the REMBI modules. Every block and
every key is optional; unknown keys are an error (a typo must not be silently lost)::

    study:
      title: Microalgae under nitrogen starvation, time course
      description: Confocal time course of ...
      keywords: [microalgae, lipid droplets]
      authors:
        - {first_name: Ana, last_name: Lebon, email: ana.lebon@example.org,
           orcid: 0000-0002-1825-0097, affiliation: IBPC, role: data acquisition}
      license: CC-BY-4.0
      funding:
        - {funder: ANR, grant_id: ANR-21-CE20-0001}
    biosample:
      organism: Chlamydomonas reinhardtii
      ncbi_taxon: 3055
      biological_entity: whole cells
      experimental_variables: [nitrogen starvation time]
    specimen:
      sample_preparation: live cells on agarose pad
      signal_contrast_mechanism: BODIPY 493/503 staining
    image_acquisition:
      imaging_method: confocal microscopy
      imaging_method_id: "FBbi:00000251"
    dublin_core:            # overrides, element by element
      subject: [lipid metabolism]
    eln: https://eln.example.org/experiments.php?mode=view&id=42   # the notebook entry (see microfair.eln.links)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from microfair.eln.links import ElnLink
from microfair.naming import split_extension

SUFFIX = ".meta.yaml"
DC_ELEMENTS = (
    "title", "creator", "subject", "description", "publisher", "contributor", "date", "type",
    "format", "identifier", "source", "language", "relation", "coverage", "rights",
)


class SidecarError(ValueError):
    """The sidecar is not valid YAML or does not follow the model; the message names the key."""


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)


def _as_list(value: Any) -> Any:
    """Accept a single string where a list is expected (``keywords: microalgae``)."""
    return [value] if isinstance(value, str) else value


class Author(Block):
    first_name: str | None = None
    last_name: str
    email: str | None = None
    orcid: str | None = Field(None, pattern=r"^(https://orcid\.org/)?\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
    affiliation: str | None = None
    role: str | None = None

    @property
    def display_name(self) -> str:
        """'Last, First' as Dublin Core and DataCite write personal names."""
        return f"{self.last_name}, {self.first_name}" if self.first_name else self.last_name


class Funding(Block):
    funder: str
    grant_id: str | None = None
    statement: str | None = None


class Study(Block):
    title: str | None = None
    description: str | None = None
    keywords: list[str] = Field(default_factory=list)
    authors: list[Author] = Field(default_factory=list)
    license: str | None = None
    funding: list[Funding] = Field(default_factory=list)
    acknowledgements: str | None = None
    publications: list[str] = Field(default_factory=list, description="DOIs or citations")

    _lists = field_validator("keywords", "publications", mode="before")(_as_list)


class Biosample(Block):
    organism: str | None = None
    common_name: str | None = None
    ncbi_taxon: str | None = Field(None, description="NCBI Taxonomy id, e.g. 9606 or NCBITaxon_9606")
    biological_entity: str | None = None
    description: str | None = None
    intrinsic_variables: list[str] = Field(default_factory=list)
    extrinsic_variables: list[str] = Field(default_factory=list)
    experimental_variables: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("experimental_variables", "variables")
    )

    _lists = field_validator(
        "intrinsic_variables", "extrinsic_variables", "experimental_variables", mode="before"
    )(_as_list)

    @field_validator("ncbi_taxon", mode="before")
    @classmethod
    def _taxon(cls, value: Any) -> Any:
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            value = value.strip().removeprefix("NCBITaxon_").removeprefix("NCBITaxon:")
            if not value.isdigit():
                raise ValueError("must be a numeric NCBI Taxonomy id, e.g. 9606")
        return value


class Specimen(Block):
    sample_preparation: str | None = None
    growth_protocol: str | None = None
    signal_contrast_mechanism: str | None = Field(
        None, validation_alias=AliasChoices("signal_contrast_mechanism", "signal", "contrast")
    )
    channel_content: list[str] = Field(default_factory=list)
    experimental_status: str | None = None

    _lists = field_validator("channel_content", mode="before")(_as_list)


class ImageAcquisition(Block):
    imaging_method: str | None = None
    imaging_method_id: str | None = Field(None, pattern=r"^FBbi[:_]\d{8}$")
    instrument: str | None = Field(None, description="overrides the microscope named by the file")
    parameters: str | None = None


class Sidecar(Block):
    study: Study = Field(default_factory=Study)
    biosample: Biosample = Field(default_factory=Biosample)
    specimen: Specimen = Field(default_factory=Specimen)
    image_acquisition: ImageAcquisition = Field(default_factory=ImageAcquisition)
    dublin_core: dict[str, str | list[str]] = Field(default_factory=dict)
    eln: ElnLink | None = Field(None, description="the electronic lab notebook entry of this acquisition")

    @field_validator("dublin_core")
    @classmethod
    def _dc_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(DC_ELEMENTS))
        if unknown:
            raise ValueError(f"unknown Dublin Core element(s) {unknown}; allowed: {', '.join(DC_ELEMENTS)}")
        return value


def sidecar_path_for(image_path: str | Path) -> Path:
    """``<folder>/<name>.meta.yaml`` for an image ``<folder>/<name>.<ext>``."""
    image_path = Path(image_path)
    stem, _ = split_extension(image_path.name)
    return image_path.with_name(stem + SUFFIX)


def raw_sidecar_path(raw_path: str | Path) -> Path:
    """Where collect keeps a raw copy's sidecar: ``<raw name>.meta.yaml``.

    One per raw copy (raw paths are unique in the ledger), so two datasets never share one, even when
    two raw files share a stem (``x.czi`` and ``x.tif``).
    """
    raw_path = Path(raw_path)
    return raw_path.with_name(raw_path.name + SUFFIX)


def load_sidecar(path: str | Path) -> Sidecar | None:
    """Load a sidecar; ``path`` is the sidecar itself or the image it describes.

    Returns None when there is no sidecar. Raises :class:`SidecarError` (naming the key)
    when it exists but is not valid.
    """
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        own = raw_sidecar_path(path)
        path = own if own.is_file() else sidecar_path_for(path)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SidecarError(f"{path.name}: not valid YAML: {err}") from err
    if data is None:
        return Sidecar()
    if not isinstance(data, dict):
        raise SidecarError(f"{path.name}: expected a mapping of blocks (study, biosample, ...)")
    try:
        return Sidecar.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        raise SidecarError(f"{path.name}: {problems}") from err
