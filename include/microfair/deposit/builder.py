"""From the ledger plus a study file to a deposit plan: files, file lists and the ``BioImages.v5`` PageTab.

Biosample and Specimen come from the study file; Image acquisition (instrument,
parameters, imaging method) from the records extracted at ingest (``rembi``,
``image_metadata``), completed by the study file's ``image_acquisitions`` where the
files are silent. Each Study Component lists its files in a JSON file list and
associates them with a Biosample, a Specimen and an Image acquisition by title,
as the BioImage Archive's own submissions do.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microfair.deposit.pagetab import Attribute, Link, Section, Submission, attrs
from microfair.deposit.study import Author, ImageAcquisition, StudyComponent, StudyMetadata, licence
from microfair.provenance.deposit import crate_files
from microfair.safepath import UnsafeName, check_relpath, contained, safe_relpath

log = logging.getLogger(__name__)

TEMPLATE = "BioImages.v5"
#: Datasets in these states have a verified raw copy and extracted metadata.
ELIGIBLE_STATES = ("validated", "converted", "qc_done")


@dataclass(frozen=True)
class DepositSelection:
    """Which ledger datasets a deposit covers: a project, optionally one study of it, or explicit uids."""

    project: str | None = None
    study: str | None = None
    uids: tuple[str, ...] = ()

    def label(self) -> str:
        parts = [p for p in (self.project, self.study) if p] or ["datasets"]
        return "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)


@dataclass
class DepositFile:
    """One file to upload: where it is, where it goes (relative to the submission's RootPath)."""

    uid: str
    local: Path
    remote: str
    size: int | None
    sha256: str | None
    microscope: str | None = None
    acquisition: str | None = None  # title of its Image acquisition
    role: str | None = None  # "companion": a file of the main file's companion folder (microfair.companions)

    def file_list_entry(self) -> dict[str, Any]:
        a = [("uid", self.uid), ("sha256", self.sha256), ("Microscope", self.microscope), ("role", self.role)]
        return {"path": self.remote, "size": self.size,
                "attributes": [{"name": n, "value": v} for n, v in a if v]}


@dataclass
class AcquisitionPlan:
    title: str
    instrument: str | None
    parameters: str | None
    methods: list[str]
    microscope: str | None
    uids: list[str] = field(default_factory=list)


@dataclass
class ComponentPlan:
    index: int
    component: StudyComponent
    files: list[DepositFile]
    acquisitions: list[AcquisitionPlan]

    @property
    def file_list_name(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.component.name or f"component{self.index + 1}")
        return f"file_list_{self.index + 1}_{slug}.json"


@dataclass
class DepositPlan:
    study: StudyMetadata
    selection: DepositSelection
    root_path: str
    release_date: dt.date
    components: list[ComponentPlan]
    accession: str | None = None

    def files(self) -> list[DepositFile]:
        seen: dict[str, DepositFile] = {}
        for c in self.components:
            for f in c.files:
                seen.setdefault(f.remote, f)
        return list(seen.values())

    def uids(self) -> list[str]:
        return list(dict.fromkeys(f.uid for f in self.files()))

    def file_lists(self) -> dict[str, list[dict[str, Any]]]:
        return {c.file_list_name: [f.file_list_entry() for f in c.files] for c in self.components}

    def acquisitions(self) -> list[AcquisitionPlan]:
        return [a for c in self.components for a in c.acquisitions]

    def pagetab(self) -> Submission:
        return build_pagetab(self)


# -- from the ledger ------------------------------------------------------------------------------------------
def _eligible(ledger: Any, selection: DepositSelection) -> list[Any]:
    out = []
    for ds in ledger.datasets(project=selection.project):
        if selection.uids and ds.uid not in selection.uids:
            continue
        if selection.study and ds.study != selection.study:
            continue
        if ds.state in ELIGIBLE_STATES and ds.raw_path:
            out.append(ds)
    return out


def _matches(ds: Any, comp: StudyComponent) -> bool:
    sel = comp.select
    return ((not sel.uids or ds.uid in sel.uids) and (not sel.study or ds.study == sel.study)
            and (not sel.experiment or ds.experiment == sel.experiment)
            and (not sel.microscope or ds.microscope == sel.microscope))


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def acquisition_parameters(rembi: dict[str, Any] | None, image_metadata: dict[str, Any] | None = None) -> str | None:
    """A readable summary of the acquisition parameters from the ledger's REMBI record."""
    acq = (rembi or {}).get("image_acquisition") or {}
    p = acq.get("image_acquisition_parameters") or {}
    parts: list[str] = []
    obj = ", ".join(x for x in (
        p.get("objective"),
        f"{_fmt(p['magnification'])}x" if p.get("magnification") else None,
        f"NA {_fmt(p['numerical_aperture'])}" if p.get("numerical_aperture") else None,
        f"{p['immersion']} immersion" if p.get("immersion") else None) if x)
    if obj:
        parts.append(f"objective: {obj}")
    channels = []
    for ch in p.get("channels") or []:
        waves = ", ".join(x for x in (
            f"ex {_fmt(ch['excitation_nm'])} nm" if ch.get("excitation_nm") else None,
            f"em {_fmt(ch['emission_nm'])} nm" if ch.get("emission_nm") else None) if x)
        label = ch.get("name") or ch.get("fluor") or "channel"
        channels.append(f"{label} ({waves})" if waves else label)
    if channels:
        parts.append("channels: " + "; ".join(channels))
    scenes = ((rembi or {}).get("image_data") or {}).get("scenes") or []
    if scenes:
        s0 = scenes[0]
        px = s0.get("pixel_voxel_size_um") or {}
        if px:
            parts.append("pixel size (µm): " + " x ".join(f"{k} {_fmt(v)}" for k, v in px.items()))
        dims = s0.get("dimension_extents") or {}
        if dims:
            parts.append("dimensions: " + " ".join(f"{k}={v}" for k, v in dims.items()))
        if s0.get("time_increment_s"):
            parts.append(f"time increment: {_fmt(s0['time_increment_s'])} s")
    if p.get("acquisition_software"):
        parts.append(f"software: {p['acquisition_software']}")
    if p.get("notes"):
        parts.append(str(p["notes"]))
    return "; ".join(parts) or None


def _override(study: StudyMetadata, microscope: str | None) -> ImageAcquisition | None:
    exact = [a for a in study.image_acquisitions if a.microscope and a.microscope == microscope]
    generic = [a for a in study.image_acquisitions if not a.microscope]
    return (exact or generic or [None])[0]


def _acquisition_of(ds: Any, rembi: dict[str, Any] | None, study: StudyMetadata) -> tuple[str | None, str | None, list[str]]:
    acq = (rembi or {}).get("image_acquisition") or {}
    over = _override(study, ds.microscope)
    instrument = acq.get("imaging_instrument") or (over.instrument if over else None)
    params = acquisition_parameters(rembi)
    if over and over.parameters:
        params = "; ".join(p for p in (params, over.parameters) if p)
    method = (acq.get("imaging_method") or {}).get("value")
    methods = [method] if method else [m.value for m in (over.imaging_method if over else []) if m.value]
    return instrument, params, methods


def plan_deposit(cfg: Any, ledger: Any, study: StudyMetadata, selection: DepositSelection, *,
                 release_in_days: int = 180, today: dt.date | None = None) -> DepositPlan:
    """Gather the datasets, files and acquisitions of every study component from the ledger."""
    today = today or dt.date.today()
    datasets = _eligible(ledger, selection)
    raw_root = Path(cfg.storage.raw)
    titles: dict[tuple, str] = {}
    components: list[ComponentPlan] = []
    for i, comp in enumerate(study.components):
        files: list[DepositFile] = []
        acqs: dict[str, AcquisitionPlan] = {}
        for ds in (d for d in datasets if _matches(d, comp)):
            rembi = ledger.get_record(ds.uid, "rembi")
            instrument, params, methods = _acquisition_of(ds, rembi, study)
            key = (instrument, params, tuple(methods), ds.microscope)
            title = titles.get(key)
            if title is None:
                over = _override(study, ds.microscope)
                base = (over.title if over and over.title else None) or instrument or ds.microscope or "acquisition"
                title, n = base, 2
                while title in titles.values():
                    title, n = f"{base} ({n})", n + 1
                titles[key] = title
            acqs.setdefault(title, AcquisitionPlan(title, instrument, params, methods, ds.microscope)).uids.append(ds.uid)
            raw = Path(ds.raw_path)
            remote = _remote_path(raw, raw_root, ds)
            files.append(DepositFile(ds.uid, raw, remote, ds.size_bytes, ds.sha256, ds.microscope, title))
            files += _companion_files(ledger, ds, remote, title)  # a .vsi's _<stem>_/ folder, same layout
            files += crate_files(cfg, ledger, ds, remote, title)  # its RO-Crate, next to it
        components.append(ComponentPlan(i, comp, files, list(acqs.values())))
    release = study.release_date or (today + dt.timedelta(days=release_in_days))
    return DepositPlan(study, selection, f"microfair/{selection.label()}", release, components, study.accession)


def _companion_files(ledger: Any, ds: Any, remote: str, acquisition: str | None) -> list[DepositFile]:
    """The companion files of ``ds`` (ledger role ``companion``) beside its raw file in the submission,
    keeping their path relative to the raw file's folder (``_slide_/stack1/frame_t_0.ets``)."""
    folder = remote.rsplit("/", 1)[0] + "/" if "/" in remote else ""
    base = Path(ds.raw_path).parent
    out = []
    for f in ledger.files(ds.uid, "companion"):
        rel = check_relpath(Path(f.path).relative_to(base).as_posix())
        out.append(DepositFile(ds.uid, Path(f.path), folder + rel, f.size_bytes, f.sha256, ds.microscope,
                               acquisition, role="companion"))
    return out


def _remote_path(raw: Path, raw_root: Path, ds: Any) -> str:
    """The file's path in the submission: relative, contained, no ``..`` (checked on resolved paths).

    A raw copy outside the raw tree falls back to ``Project/Study/Experiment/<name>`` with every part
    made safe; :class:`~microfair.safepath.UnsafeName` when that cannot be done either.
    """
    try:
        return check_relpath(contained(raw_root, raw).resolve().relative_to(raw_root.resolve()).as_posix())
    except UnsafeName:
        return safe_relpath(*(p for p in (ds.project, ds.study, ds.experiment) if p), raw.name)


# -- PageTab --------------------------------------------------------------------------------------------------
def _organism(b: Any) -> Attribute | None:
    o = b.organism
    if o is None or not o.scientific_name:
        return None
    value = f"{o.scientific_name} ({o.common_name})" if o.common_name else o.scientific_name
    return Attribute("Organism", value, valqual=[("NCBI taxon ID", o.ncbi_taxon)] if o.ncbi_taxon else [])


def _only(items: list[Any], ref: str | None) -> Any:
    if ref:
        return next((x for x in items if x.title == ref), None)
    return items[0] if len(items) == 1 else None


def _author(i: int, a: Author, org_ids: dict[str, str], contact: Author | None) -> Section:
    role = a.role or ("corresponding author" if a is contact else None)
    orcid = a.orcid.rsplit("/", 1)[-1] if a.orcid else None
    sec = Section("Author", f"author-{i + 1}", attrs(("Name", a.display_name), ("E-mail", a.email),
                                                    ("Role", role), ("ORCID", orcid)))
    for ref in a.affiliations:
        if ref in org_ids:
            sec.attributes.append(Attribute("affiliation", org_ids[ref], reference=True))
    return sec


def build_pagetab(plan: DepositPlan) -> Submission:
    """The ``BioImages.v5`` submission: Study with its Biosamples, Specimens, Image acquisitions, optional
    Image analyses, Study Components (File List + Associations), Authors and Organisations (references)."""
    st = plan.study
    release = plan.release_date.isoformat()
    lic = licence(st.license)
    study = Section("Study", None, attrs(("Title", st.title), ("ReleaseDate", release),
                                         ("Description", st.description), ("Keywords", st.keywords)))
    if lic:
        study.attributes.append(Attribute("License", lic[0], valqual=[("URL", lic[1])]))
    if st.funding and st.funding.statement:
        study.attributes.append(Attribute("Funding statement", st.funding.statement))
    if st.acknowledgements:
        study.attributes.append(Attribute("Acknowledgements", st.acknowledgements))
    study.links = [Link(ln.url, attrs(("Description", ln.description))) for ln in st.links if ln.url]

    subs: list[Section] = []
    for i, b in enumerate(st.biosamples):
        sec = Section("Biosample", f"Biosample-{i + 1}", attrs(("Title", b.title)))
        org = _organism(b)
        if org:
            sec.attributes.append(org)
        sec.attributes += attrs(("Description", b.description), ("Biological entity", b.biological_entity),
                                ("Intrinsic variable", b.intrinsic_variables),
                                ("Extrinsic variable", b.extrinsic_variables),
                                ("Experimental variable", b.experimental_variables))
        subs.append(sec)
    for i, s in enumerate(st.specimens):
        subs.append(Section("Specimen", f"Specimen-{i + 1}", attrs(
            ("Title", s.title), ("Sample preparation protocol", s.sample_preparation),
            ("Growth protocol", s.growth_protocol), ("Signal/contrast mechanism", s.signal_contrast_mechanism))))
    seen: set[str] = set()
    for a in plan.acquisitions():
        if a.title in seen:
            continue
        seen.add(a.title)
        subs.append(Section("Image acquisition", f"Image acquisition-{len(seen)}", attrs(
            ("Title", a.title), ("Imaging instrument", a.instrument),
            ("Image acquisition parameters", a.parameters), ("Imaging method", a.methods))))
    for i, an in enumerate(st.image_analyses):
        subs.append(Section("Image analysis", f"Image analysis-{i + 1}",
                            attrs(("Title", an.title), ("Image analysis overview", an.overview))))
    for c in plan.components:
        comp = c.component
        sec = Section("Study Component", f"Study Component-{c.index + 1}", attrs(
            ("Name", comp.name), ("Description", comp.description), ("File List", c.file_list_name)))
        bio, spec = _only(st.biosamples, comp.biosample), _only(st.specimens, comp.specimen)
        analysis = _only(st.image_analyses, comp.image_analysis) if comp.image_analysis else None
        for j, a in enumerate(c.acquisitions):
            sec.subsections.append(Section("Associations", f"asso-{c.index + 1}-{j + 1}", attrs(
                ("Biosample", bio.title if bio else None), ("Specimen", spec.title if spec else None),
                ("Image acquisition", a.title), ("Image analysis", analysis.title if analysis else None))))
        subs.append(sec)
    contact = st.contact()
    org_ids: dict[str, str] = {}
    orgs: list[Section] = []
    for i, o in enumerate(st.organisations):
        accno = f"o{i + 1}"
        for key in (o.id, o.name):
            if key:
                org_ids[key] = accno
        orgs.append(Section("organisation", accno, attrs(("Name", o.name), ("Address", o.address),
                                                         ("RORID", o.ror), ("URL", o.url))))
    subs += [_author(i, a, org_ids, contact) for i, a in enumerate(st.authors)]
    subs += orgs
    if st.funding:
        subs += [Section("Funding", None, attrs(("Agency", g.funder), ("grant_id", g.id)))
                 for g in st.funding.grants]
    for p in st.publications:
        subs.append(Section("Publication", None, attrs(("Title", p.title), ("Authors", p.authors),
                                                       ("DOI", p.doi), ("Year", p.year), ("Pubmed ID", p.pubmed_id))))
    study.subsections = subs
    sub_attrs = attrs(("Template", TEMPLATE), ("Title", st.title), ("ReleaseDate", release),
                      ("AttachTo", "BioImages"), ("RootPath", plan.root_path))
    return Submission(study, plan.accession, sub_attrs)
