"""Local validation before anything is uploaded: every field the ``BioImages.v5`` template requires.

:func:`validate_plan` returns *all* problems at once, each with the path of the field in the
study file (``authors[0].email``, ``biosamples[0].organism.scientific_name``,
``components[1].image_acquisitions[Zeiss LSM 980].imaging_method``), so that a depositor
fixes the file in one go.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from microfair.deposit.builder import DepositPlan
from microfair.deposit.problems import Problem
from microfair.deposit.study import StudyMetadata, licence

MIN_TITLE = 25
MAX_RELEASE_YEARS = 2
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate_study(st: StudyMetadata, *, today: dt.date | None = None) -> list[Problem]:
    """Problems in the study file alone (no ledger needed)."""
    today = today or dt.date.today()
    p: list[Problem] = []
    if not st.title:
        p.append(Problem("title", "missing"))
    elif len(st.title) < MIN_TITLE:
        p.append(Problem("title", f"too short ({len(st.title)} characters; at least {MIN_TITLE})"))
    if st.release_date and st.release_date > _add_years(today, MAX_RELEASE_YEARS):
        p.append(Problem("release_date", f"{st.release_date} is more than {MAX_RELEASE_YEARS} years ahead"))
    if not st.description:
        p.append(Problem("description", "missing"))
    if not [k for k in st.keywords if k]:
        p.append(Problem("keywords", "missing (at least one keyword)"))
    if not st.license:
        p.append(Problem("license", "missing (CC0 or CC-BY-4.0)"))
    elif licence(st.license) is None:
        p.append(Problem("license", f"{st.license!r} is not accepted by the BioImage Archive (CC0 or CC-BY-4.0)"))

    orgs = {k for o in st.organisations for k in (o.id, o.name) if k}
    for i, o in enumerate(st.organisations):
        if not o.name:
            p.append(Problem(f"organisations[{i}].name", "missing"))
    if not st.authors:
        p.append(Problem("authors", "missing (at least one author, the contact with name, e-mail, organisation)"))
    contact = st.contact()
    for i, a in enumerate(st.authors):
        is_contact = a is contact
        who = "contact " if is_contact else ""
        if not a.display_name:
            p.append(Problem(f"authors[{i}].name", f"{who}name missing"))
        if is_contact and not a.email:
            p.append(Problem(f"authors[{i}].email", "contact e-mail missing"))
        if a.email and not EMAIL.match(a.email):
            p.append(Problem(f"authors[{i}].email", f"not an e-mail address: {a.email!r}"))
        if not a.affiliations:
            p.append(Problem(f"authors[{i}].affiliations", f"{who}organisation missing"))
        for j, ref in enumerate(a.affiliations):
            if ref not in orgs:
                p.append(Problem(f"authors[{i}].affiliations[{j}]", f"no organisation {ref!r} in organisations"))

    if not st.biosamples:
        p.append(Problem("biosamples", "missing (at least one biosample)"))
    for i, b in enumerate(st.biosamples):
        if not b.title:
            p.append(Problem(f"biosamples[{i}].title", "missing"))
        if not (b.organism and b.organism.scientific_name):
            p.append(Problem(f"biosamples[{i}].organism.scientific_name", "missing"))
        if not b.biological_entity:
            p.append(Problem(f"biosamples[{i}].biological_entity", "missing"))
    if not st.specimens:
        p.append(Problem("specimens", "missing (at least one specimen)"))
    for i, s in enumerate(st.specimens):
        if not s.title:
            p.append(Problem(f"specimens[{i}].title", "missing"))
        if not s.sample_preparation:
            p.append(Problem(f"specimens[{i}].sample_preparation", "sample preparation protocol missing"))
    for i, an in enumerate(st.image_analyses):
        if not an.overview:
            p.append(Problem(f"image_analyses[{i}].overview", "missing"))
        if not an.title:
            p.append(Problem(f"image_analyses[{i}].title", "missing"))
    for kind, items in (("biosamples", st.biosamples), ("specimens", st.specimens),
                        ("image_analyses", st.image_analyses), ("image_acquisitions", st.image_acquisitions)):
        titles = [x.title for x in items if x.title]
        for t in sorted({t for t in titles if titles.count(t) > 1}):
            p.append(Problem(kind, f"title {t!r} used more than once (associations refer to titles)"))

    if not st.components:
        p.append(Problem("components", "missing (at least one study component)"))
    for i, c in enumerate(st.components):
        if not c.name:
            p.append(Problem(f"components[{i}].name", "missing"))
        if not c.description:
            p.append(Problem(f"components[{i}].description", "missing"))
        for field, ref, items in (("biosample", c.biosample, st.biosamples), ("specimen", c.specimen, st.specimens),
                                  ("image_analysis", c.image_analysis, st.image_analyses)):
            if ref and not any(x.title == ref for x in items):
                p.append(Problem(f"components[{i}].{field}", f"no {field.replace('_', ' ')} titled {ref!r}"))
            elif not ref and field != "image_analysis" and len(items) > 1:
                p.append(Problem(f"components[{i}].{field}", f"missing: {len(items)} {field}s exist, name one"))
    return p


def validate_plan(plan: DepositPlan, *, today: dt.date | None = None) -> list[Problem]:
    """Every problem of the study file and of the files/acquisitions gathered from the ledger."""
    p = validate_study(plan.study, today=today)
    today = today or dt.date.today()
    if plan.release_date > _add_years(today, MAX_RELEASE_YEARS) and not plan.study.release_date:
        p.append(Problem("release_date", f"{plan.release_date} is more than {MAX_RELEASE_YEARS} years ahead"))
    for c in plan.components:
        base = f"components[{c.index}]"
        if not c.files:
            sel = plan.selection
            p.append(Problem(f"{base}.files", "file list is empty: no validated dataset matches "
                                              f"project={sel.project!r} study={sel.study!r} "
                                              f"select={c.component.select.model_dump(exclude_defaults=True)}"))
        for f in c.files:
            if not Path(f.local).is_file():
                p.append(Problem(f"{base}.files[{f.remote}]", f"raw copy {f.local} of {f.uid} is missing"))
            if not f.sha256:
                p.append(Problem(f"{base}.files[{f.remote}]", f"{f.uid} has no SHA-256 in the ledger"))
        for a in c.acquisitions:
            at = f"{base}.image_acquisitions[{a.title}]"
            hint = (f" (the files do not say; add image_acquisitions: - microscope: {a.microscope} …"
                    " to the study file)")
            if not a.instrument:
                p.append(Problem(f"{at}.imaging_instrument", "missing" + hint))
            if not a.parameters:
                p.append(Problem(f"{at}.image_acquisition_parameters", "missing" + hint))
            if not a.methods:
                p.append(Problem(f"{at}.imaging_method", "missing" + hint))
    return p


def _add_years(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)
