"""The study metadata file (YAML) a depositor writes for one BioImage Archive submission.

It says what the image files cannot: who, why, under which licence, what the
samples were and how they were prepared, and which acquisitions form which
study component. Instrument, parameters and imaging method come from the
ledger (the records extracted at ingest) and may be completed here.

Every field is optional at parse time so that :func:`microfair.deposit.validate.validate_study`
can list *every* missing field at once; a value of the wrong type is reported with its
path and dropped, never fatal on its own.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from microfair.deposit.problems import Problem


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


class Organisation(Block):
    id: str | None = Field(None, description="short key authors refer to (default: the name)")
    name: str | None = None
    address: str | None = None
    ror: str | None = Field(None, description="ROR identifier, e.g. https://ror.org/02feahw73")
    url: str | None = None


class Author(Block):
    name: str | None = Field(None, description="full name; or first_name + last_name")
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    orcid: str | None = Field(None, pattern=r"^(https?://orcid\.org/)?\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
    role: str | None = Field(None, description="e.g. corresponding author, data acquisition, submitter")
    contact: bool = Field(False, description="the contact author (default: the first author with an e-mail)")
    affiliations: list[str] = Field(default_factory=list, description="organisation ids or names")

    @field_validator("affiliations", mode="before")
    @classmethod
    def _affiliations(cls, v: Any) -> Any:
        return _as_list(v)

    @property
    def display_name(self) -> str | None:
        if self.name:
            return self.name
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) or None


class Grant(Block):
    funder: str | None = None
    id: str | None = None


class Funding(Block):
    statement: str | None = None
    grants: list[Grant] = Field(default_factory=list)


class Publication(Block):
    title: str | None = None
    authors: str | None = None
    doi: str | None = None
    year: int | None = None
    pubmed_id: str | None = None


class Link(Block):
    url: str | None = None
    description: str | None = None


class Organism(Block):
    scientific_name: str | None = None
    common_name: str | None = None
    ncbi_taxon: str | None = None

    @field_validator("ncbi_taxon", mode="before")
    @classmethod
    def _taxon(cls, v: Any) -> Any:
        if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
            return f"NCBITaxon_{v}"
        return v


class Biosample(Block):
    title: str | None = Field(None, description="short unique name; components refer to it")
    organism: Organism | None = None
    biological_entity: str | None = None
    description: str | None = None
    intrinsic_variables: list[str] = Field(default_factory=list)
    extrinsic_variables: list[str] = Field(default_factory=list)
    experimental_variables: list[str] = Field(default_factory=list)

    @field_validator("organism", mode="before")
    @classmethod
    def _organism(cls, v: Any) -> Any:
        return {"scientific_name": v} if isinstance(v, str) else v

    @field_validator("intrinsic_variables", "extrinsic_variables", "experimental_variables", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _as_list(v)


class Specimen(Block):
    title: str | None = None
    sample_preparation: str | None = None
    growth_protocol: str | None = None
    signal_contrast_mechanism: str | None = None


class ImagingMethod(Block):
    value: str | None = None
    ontology_id: str | None = Field(None, pattern=r"^FBbi[:_]\d{8}$")


class ImageAcquisition(Block):
    """Completes (or overrides) what the ledger knows about the acquisitions of one microscope."""

    microscope: str | None = Field(None, description="landing-zone microscope name this applies to (all if empty)")
    title: str | None = None
    instrument: str | None = Field(None, description="used when the files do not name the instrument")
    parameters: str | None = Field(None, description="appended to the parameters read from the files")
    imaging_method: list[ImagingMethod] = Field(default_factory=list)

    @field_validator("imaging_method", mode="before")
    @classmethod
    def _methods(cls, v: Any) -> Any:
        v = _as_list(v) if not isinstance(v, dict) else [v]
        return [{"value": m} if isinstance(m, str) else m for m in (v or [])]


class ImageAnalysis(Block):
    title: str | None = None
    overview: str | None = None


class Selection(Block):
    """Which ledger datasets belong to a component (within the deposit's project/study selection)."""

    study: str | None = None
    experiment: str | None = None
    microscope: str | None = None
    uids: list[str] = Field(default_factory=list)


class StudyComponent(Block):
    name: str | None = None
    description: str | None = None
    select: Selection = Field(default_factory=Selection)
    biosample: str | None = Field(None, description="title of a biosample (default: the only one)")
    specimen: str | None = Field(None, description="title of a specimen (default: the only one)")
    image_analysis: str | None = Field(None, description="title of an image analysis")


class StudyMetadata(Block):
    """One BioImage Archive study (``BioImages.v5``)."""

    accession: str | None = Field(None, pattern=r"^S-[A-Z]+\d+$",
                                  description="set to update an existing submission")
    title: str | None = None
    description: str | None = None
    keywords: list[str] = Field(default_factory=list)
    subject: list[str] = Field(default_factory=list,
                               description="Dataverse subject(s), e.g. Medicine, Health and Life Sciences")
    production_date: dt.date | None = Field(None, description="when the data were produced (Dataverse)")
    license: str | None = Field(None, description="CC0 or CC-BY-4.0 (the licences the BIA accepts)")
    release_date: dt.date | None = None
    acknowledgements: str | None = None
    funding: Funding | None = None
    publications: list[Publication] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    organisations: list[Organisation] = Field(default_factory=list)
    authors: list[Author] = Field(default_factory=list)
    biosamples: list[Biosample] = Field(default_factory=list)
    specimens: list[Specimen] = Field(default_factory=list)
    image_acquisitions: list[ImageAcquisition] = Field(default_factory=list)
    image_analyses: list[ImageAnalysis] = Field(default_factory=list)
    components: list[StudyComponent] = Field(default_factory=list)

    @field_validator("keywords", "subject", mode="before")
    @classmethod
    def _keywords(cls, v: Any) -> Any:
        return _as_list(v)

    @model_validator(mode="before")
    @classmethod
    def _singular(cls, data: Any) -> Any:
        """Accept ``biosample:``/``specimen:``/``component:`` for a study with one of each."""
        if isinstance(data, dict):
            for one, many in (("biosample", "biosamples"), ("specimen", "specimens"),
                              ("component", "components"), ("image_analysis", "image_analyses"),
                              ("image_acquisition", "image_acquisitions")):
                if one in data and many not in data:
                    data = {**data, many: [data[one]]}
                    del data[one]
        return data

    def contact(self) -> Author | None:
        flagged = [a for a in self.authors if a.contact]
        if flagged:
            return flagged[0]
        return next((a for a in self.authors if a.email), self.authors[0] if self.authors else None)

    def organisation(self, ref: str) -> Organisation | None:
        for o in self.organisations:
            if ref in (o.id, o.name):
                return o
        return None


LICENCES = {
    "CC0": ("CC0", "https://creativecommons.org/publicdomain/zero/1.0/legalcode"),
    "CC BY 4.0": ("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/legalcode"),
}


def licence(value: str | None) -> tuple[str, str] | None:
    """The BIA licence name and URL for ``value`` (``CC-BY-4.0``, ``CC BY 4.0``, ``CC0-1.0`` …), or None."""
    if not value:
        return None
    key = re.sub(r"[\s_-]+", " ", value.strip().upper())
    if key in ("CC0", "CC0 1.0", "CC ZERO"):
        return LICENCES["CC0"]
    if key in ("CC BY 4.0", "CC BY"):
        return LICENCES["CC BY 4.0"]
    return None


class StudyFileError(ValueError):
    """The study file cannot be read at all (missing, not YAML, not a mapping)."""


def _drop(data: Any, loc: tuple[Any, ...]) -> bool:
    """Remove the value at ``loc`` from the raw data; False when it is not there."""
    node = data
    for key in loc[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del node[loc[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


def parse_study(data: dict[str, Any], source: str = "study") -> tuple[StudyMetadata, list[Problem]]:
    """Build the model, dropping (and reporting) every value of the wrong type or unknown key."""
    import copy

    data = copy.deepcopy(data)
    problems: list[Problem] = []
    for _ in range(50):
        try:
            return StudyMetadata.model_validate(data), problems
        except ValidationError as err:
            progressed = False
            for e in err.errors():
                loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
                path = _path(loc)
                msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
                problems.append(Problem(path, msg))
                progressed |= _drop(data, loc)
            if not progressed:
                break
    return StudyMetadata(), problems


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_study(path: str | Path) -> tuple[StudyMetadata, list[Problem]]:
    """Read a study file; raise :class:`StudyFileError` only when it cannot be read as a YAML mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyFileError(f"cannot read the study file {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise StudyFileError(f"the study file {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise StudyFileError(f"the study file {p} must be a mapping (title:, description:, authors: …)")
    return parse_study(data, str(p))
