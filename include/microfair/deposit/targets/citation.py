"""The citation fields Dataverse and Zenodo require, checked locally, and the study's licence as SPDX.

:func:`validate_citation` lists *every* missing or invalid field at once, each with its path in the
study file, before anything is sent. The BioImage Archive's own (longer) list stays in
:mod:`microfair.deposit.validate`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from microfair.deposit.problems import Problem
from microfair.deposit.study import Author, StudyMetadata
from microfair.deposit.validate import EMAIL

#: SPDX id -> (Dataverse licence name, licence URI). What a facility may ask for; the installation decides.
LICENCES: dict[str, tuple[str, str]] = {
    "CC0-1.0": ("CC0 1.0", "http://creativecommons.org/publicdomain/zero/1.0"),
    "CC-BY-4.0": ("CC BY 4.0", "http://creativecommons.org/licenses/by/4.0"),
    "CC-BY-SA-4.0": ("CC BY-SA 4.0", "http://creativecommons.org/licenses/by-sa/4.0"),
    "CC-BY-NC-4.0": ("CC BY-NC 4.0", "http://creativecommons.org/licenses/by-nc/4.0"),
    "CC-BY-NC-SA-4.0": ("CC BY-NC-SA 4.0", "http://creativecommons.org/licenses/by-nc-sa/4.0"),
    "Etalab-2.0": ("etalab 2.0",
                   "https://www.etalab.gouv.fr/wp-content/uploads/2017/04/ETALAB-Licence-Ouverte-v2.0.pdf"),
    "ODbL-1.0": ("ODbL 1.0", "http://opendatacommons.org/licenses/odbl/1.0"),
}

#: The Dataverse citation block's ``subject`` vocabulary (citation.tsv).
DATAVERSE_SUBJECTS = (
    "Agricultural Sciences", "Arts and Humanities", "Astronomy and Astrophysics", "Business and Management",
    "Chemistry", "Computer and Information Science", "Earth and Environmental Sciences", "Engineering", "Law",
    "Mathematical Sciences", "Medicine, Health and Life Sciences", "Physics", "Social Sciences", "Other",
)

TARGET_TITLES = {"dataverse": "Dataverse", "zenodo": "Zenodo", "bia": "the BioImage Archive"}


def spdx(value: str | None) -> str | None:
    """The SPDX id of a licence written ``CC-BY-4.0``, ``CC BY 4.0``, ``cc0``, ``Etalab 2.0`` …; None if unknown."""
    if not value:
        return None
    key = re.sub(r"[\s_]+", "-", value.strip()).upper()
    aliases = {"CC0": "CC0-1.0", "CC-ZERO": "CC0-1.0", "CC-BY": "CC-BY-4.0", "ETALAB": "Etalab-2.0",
               "LICENCE-OUVERTE-2.0": "Etalab-2.0", "LO-2.0": "Etalab-2.0"}
    key = aliases.get(key, key)
    for known in LICENCES:
        if known.upper() == key:
            return known
    return None


def split_name(a: Author) -> tuple[str | None, str | None]:
    """(given, family) of an author: first/last name, or the last word of ``name`` as the family name."""
    if a.first_name or a.last_name:
        return a.first_name, a.last_name
    if not a.name:
        return None, None
    parts = a.name.rsplit(" ", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def citation_name(a: Author) -> str:
    """``Family, Given`` (the form both Dataverse and Zenodo cite)."""
    given, family = split_name(a)
    return f"{family}, {given}" if given and family else (a.display_name or "")


def orcid_id(a: Author) -> str | None:
    return a.orcid.rsplit("/", 1)[-1] if a.orcid else None


def affiliation_names(a: Author, study: StudyMetadata) -> list[str]:
    out = []
    for ref in a.affiliations:
        o = study.organisation(ref)
        out.append(o.name if o and o.name else ref)
    return out


def release_date(study: StudyMetadata, today: dt.date | None = None) -> dt.date:
    return study.release_date or (today or dt.date.today())


def validate_citation(study: StudyMetadata, target: str) -> list[Problem]:
    """Every citation field ``target`` (``dataverse`` | ``zenodo``) requires that the study file lacks."""
    where = TARGET_TITLES.get(target, target)
    p: list[Problem] = []
    if not study.title:
        p.append(Problem("title", "missing"))
    if not study.description:
        p.append(Problem("description", "missing"))
    if not study.authors:
        p.append(Problem("authors", "missing (at least one author)"))
    contact = study.contact()
    for i, a in enumerate(study.authors):
        if not a.display_name:
            p.append(Problem(f"authors[{i}].name", "missing"))
        if a.email and not EMAIL.match(a.email):
            p.append(Problem(f"authors[{i}].email", f"not an e-mail address: {a.email!r}"))
        for j, ref in enumerate(a.affiliations):
            if study.organisation(ref) is None:
                p.append(Problem(f"authors[{i}].affiliations[{j}]", f"no organisation {ref!r} in organisations"))
    if target == "dataverse":
        if study.authors and (contact is None or not contact.email):
            i = study.authors.index(contact) if contact in study.authors else 0
            p.append(Problem(f"authors[{i}].email", f"contact e-mail missing ({where} requires a point of contact)"))
        if not study.subject:
            p.append(Problem("subject", "missing (one or more of: " + "; ".join(DATAVERSE_SUBJECTS) + ")"))
        for i, s in enumerate(study.subject):
            if s not in DATAVERSE_SUBJECTS:
                p.append(Problem(f"subject[{i}]",
                                 f"{s!r} is not a Dataverse subject (" + "; ".join(DATAVERSE_SUBJECTS) + ")"))
    if not study.license:
        p.append(Problem("license", "missing (an SPDX id such as CC-BY-4.0 or CC0-1.0)"))
    elif spdx(study.license) is None:
        p.append(Problem("license", f"{study.license!r} is not a licence microfair knows for {where} "
                                    f"({', '.join(LICENCES)})"))
    return p


def study_digest(payload: Any) -> str:
    """A stable digest of the metadata sent (a re-run that changes nothing sends nothing)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
