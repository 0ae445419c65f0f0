"""The facility's file-naming convention (CNRS GeDeM/RTmfm guide, 2025).

A compliant name has six fields joined by ``_``, then the extension::

    2023-01-15_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi
    date       project study?    creator condition type version

Concretely: ``<ISO-8601 date>_<PROJECT>_<free descriptive tokens…>_<Creator>_<Condition>_<RAW|processed>_v<NN>.<ext>``.
The date is ``YYYY-MM-DD`` (or ``YYYYMMDD``), the project acronym 2–10 upper-case
letters/digits, the creator and condition are ASCII letters/digits/hyphens, the
type one of the configured types (``RAW`` or ``processed``), the version ``v`` plus
at least two digits. Only ASCII letters, digits, ``-``, ``_`` and ``.`` are allowed
(no spaces, accents or special characters), and the whole name must be shorter
than ``max_length`` (128) characters. Tokens between the project and the creator
(``MicroAlgue`` above) are a free description, for example the study.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime

ALLOWED = re.compile(r"^[A-Za-z0-9._-]+$")
PROJECT = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")
WORD = re.compile(r"^[A-Za-z0-9-]+$")
VERSION = re.compile(r"^v(\d{2,})$")
#: A token written like a date (checked as a date only if it parses).
DATE_LIKE = re.compile(r"^(?:1[89]|2\d)\d{2}(?:-\d{1,2}-\d{1,2}|\d{4})$")

#: Multi-part extensions that belong together (checked before the last suffix).
COMPOUND_EXTENSIONS = (".ome.tiff", ".ome.tif", ".ome.zarr", ".ome.btf")


@dataclass(frozen=True)
class NameTokens:
    """The fields a compliant name carries."""

    date: date
    project: str
    creator: str
    kind: str
    condition: str
    version: int
    extension: str
    description: tuple[str, ...] = ()

    @property
    def study(self) -> str | None:
        """The free description between project and creator, used as the study when folders do not say."""
        return "-".join(self.description) or None


@dataclass
class NameReport:
    name: str
    valid: bool
    violations: list[str] = field(default_factory=list)
    suggestion: str | None = None  # always a name that passes the check, or None
    tokens: NameTokens | None = None
    notes: list[str] = field(default_factory=list)  # about the suggestion: a guessed date, or why there is none

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "valid": self.valid,
            "violations": list(self.violations),
            "suggestion": self.suggestion,
            "notes": list(self.notes),
            "tokens": None if self.tokens is None else {
                "date": self.tokens.date.isoformat(), "project": self.tokens.project,
                "description": list(self.tokens.description), "creator": self.tokens.creator,
                "condition": self.tokens.condition, "type": self.tokens.kind,
                "version": self.tokens.version, "extension": self.tokens.extension,
            },
        }


def split_extension(name: str) -> tuple[str, str]:
    lower = name.lower()
    for ext in COMPOUND_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)], name[-len(ext):]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, "." + ext


def _parse_date(token: str) -> date | None:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(token, fmt).date()
        except ValueError:
            continue
    return None


def ascii_fold(text: str) -> str:
    """Strip accents and replace anything outside [A-Za-z0-9._-] by '-'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    folded = re.sub(r"\s+", "-", folded.strip())
    folded = re.sub(r"[^A-Za-z0-9._-]+", "-", folded)
    return re.sub(r"-{2,}", "-", folded).strip("-")


def check_name(name: str, *, types: tuple[str, ...] | list[str] = ("RAW", "processed"), max_length: int = 128,
               today: date | None = None, suggest: bool = True) -> NameReport:
    """Check ``name`` (a file name, no folders) against the convention; list every violation.

    An invalid name gets a ``suggestion`` that itself passes the check, or none, with ``notes``
    saying why (see :func:`suggest_name`). ``today`` enables the future-date check.
    """
    violations: list[str] = []
    if len(name) >= max_length:
        violations.append(f"name is {len(name)} characters long; it must be under {max_length}")
    if " " in name:
        violations.append("name contains spaces")
    if any(ord(c) > 127 for c in name):
        violations.append("name contains accents or non-ASCII characters: "
                          + "".join(sorted({c for c in name if ord(c) > 127})))
    specials = sorted({c for c in name if ord(c) <= 127 and not re.match(r"[A-Za-z0-9._ -]", c)})
    if specials:
        violations.append("name contains special characters: " + " ".join(specials))

    stem, ext = split_extension(name)
    if not ext:
        violations.append("name has no file extension")
    parts = stem.split("_")
    tokens: NameTokens | None = None
    if len(parts) < 6:
        violations.append(
            f"name has {len(parts)} field(s) separated by '_'; expected at least 6: "
            "date_PROJECT_Creator_Condition_TYPE_vNN")
    else:
        d_tok, proj, *middle, creator, cond, kind, ver = parts
        field_errors: list[str] = []
        d = _parse_date(d_tok)
        if d is None:
            field_errors.append(f"date {d_tok!r} is not a valid ISO-8601 date (YYYY-MM-DD)"
                                + (": no such day" if DATE_LIKE.match(d_tok) else ""))
        elif today is not None and d > today:
            field_errors.append(f"date {d_tok} is in the future")
        if not PROJECT.match(proj):
            field_errors.append(f"project acronym {proj!r} must be 2-10 upper-case letters or digits")
        for label, tok in (("creator", creator), ("condition", cond)):
            if not tok or not WORD.match(ascii_fold(tok) or "!") or not WORD.match(tok):
                field_errors.append(f"{label} {tok!r} must be ASCII letters, digits or '-'")
        for tok in middle:
            if not WORD.match(tok):
                field_errors.append(f"description token {tok!r} must be ASCII letters, digits or '-'")
        kind_match = next((t for t in types if t == kind), None)
        if kind_match is None:
            field_errors.append(f"type {kind!r} must be one of {', '.join(types)}")
        vm = VERSION.match(ver)
        if not vm:
            field_errors.append(f"version {ver!r} must be 'v' followed by two or more digits (v01)")
        violations.extend(field_errors)
        if not field_errors and d is not None and vm:
            tokens = NameTokens(date=d, project=proj, creator=creator, kind=kind, condition=cond,
                                version=int(vm.group(1)), extension=ext, description=tuple(middle))
    valid = not violations
    suggestion, notes = (None, []) if valid or not suggest else _suggestion(
        name, types=types, max_length=max_length, today=today)
    return NameReport(name=name, valid=valid, violations=violations, suggestion=suggestion,
                      tokens=tokens if valid else None, notes=notes)


def _suggestion(name: str, *, types: tuple[str, ...] | list[str], max_length: int,
                today: date | None) -> tuple[str | None, list[str]]:
    """A suggestion that passes the check (verified), or None; with notes for people."""
    notes: list[str] = []
    candidate = _build_suggestion(name, types=types, max_length=max_length, default_date=today, notes=notes)
    if candidate is None:
        return None, notes
    check = check_name(candidate, types=types, max_length=max_length, today=today, suggest=False)
    if not check.valid:
        return None, [*notes, "no compliant name could be made from it automatically ("
                      + "; ".join(check.violations) + "); rename it by hand"]
    return candidate, notes


def suggest_name(name: str, *, types: tuple[str, ...] | list[str] = ("RAW", "processed"), max_length: int = 128,
                 default_date: date | None = None) -> str | None:
    """A compliant name as close to ``name`` as we can make it, or None when none can be made.

    Unknown fields get placeholders (``PROJ``, ``Creator``, ``Condition``). The date is never
    invented for a name that holds an impossible one (``2024-02-31``): there is no suggestion.
    A name without any date gets ``default_date`` (default: today), which ``check_name`` says in
    its notes. The result is verified with :func:`check_name`.
    """
    notes: list[str] = []
    candidate = _build_suggestion(name, types=types, max_length=max_length, default_date=default_date, notes=notes)
    if candidate is None:
        return None
    ok = check_name(candidate, types=types, max_length=max_length, suggest=False).valid
    return candidate if ok else None


def _build_suggestion(name: str, *, types: tuple[str, ...] | list[str], max_length: int,
                      default_date: date | None, notes: list[str]) -> str | None:
    stem, ext = split_extension(name)
    ext = ascii_fold(ext).lower() if ext else ""
    if ext and not ext.startswith("."):
        ext = "." + ext
    if ext in ("", "."):
        notes.append("no suggestion: the name has no file extension, and microfair does not guess the format")
        return None
    raw_parts = [ascii_fold(p) for p in re.split(r"[_\s]+", stem)]
    parts = [p for p in raw_parts if p]
    d: date | None = None
    rest: list[str] = []
    for p in parts:
        pd = _parse_date(p) if d is None else None
        if pd is not None:
            d = pd
        else:
            rest.append(p)
    if d is None:
        impossible = [p for p in rest if DATE_LIKE.match(p)]
        if impossible:
            notes.append(f"no suggestion: cannot infer the acquisition date, {impossible[0]!r} is not a valid date; "
                         "write the date of the acquisition as YYYY-MM-DD")
            return None
        d = default_date or date.today()
        notes.append(f"no date in the name: {d.isoformat()}{'' if default_date else ' (today)'} is only a "
                     "placeholder in the suggestion; use the date of the acquisition")
    version = 1
    kind = types[0]
    keep: list[str] = []
    for p in rest:
        vm = re.match(r"^[vV](\d+)$", p)
        lowered = {t.lower(): t for t in types}
        if vm:
            version = int(vm.group(1))
        elif p.lower() in lowered:
            kind = lowered[p.lower()]
        else:
            keep.append(p.replace(".", "-"))
    project = next((p for p in keep if PROJECT.match(p)), None)
    if project:
        keep.remove(project)
    else:
        project = "PROJ"
    creator = keep.pop(-2) if len(keep) >= 2 else "Creator"
    condition = keep.pop(-1) if keep else "Condition"
    fields = [d.isoformat(), project, *keep, creator, condition, kind, f"v{version:02d}"]
    out = "_".join(fields) + ext
    while len(out) >= max_length and keep:
        keep.pop()
        out = "_".join([d.isoformat(), project, *keep, creator, condition, kind, f"v{version:02d}"]) + ext
    if len(out) >= max_length:
        fixed = len(out) - len(creator) - len(condition)
        room = max(2, (max_length - 1 - fixed) // 2)
        creator, condition = creator[:room], condition[:room]
        out = "_".join([d.isoformat(), project, creator, condition, kind, f"v{version:02d}"]) + ext
    return out
