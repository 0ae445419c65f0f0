"""PageTab, the BioStudies submission format: a tree of typed sections with attributes.

The same tree serialises to JSON (what we submit) and to TSV (what people review).
TSV conventions (biostudies-backend-services ``serialization.tsv``): a blank line
separates sections; a section line is ``Type[\\tAccNo[\\tParentAccNo]]``; an attribute
line is ``Name\\tValue``; ``<name>`` marks a reference attribute, ``(name)`` a name
qualifier and ``[name]`` a value qualifier of the attribute above; ``Link\\tURL`` and
``File\\tPath`` open a link or file of the section above.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Attribute:
    name: str
    value: str | None = None
    reference: bool = False
    valqual: list[tuple[str, str]] = field(default_factory=list)
    nmqual: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.value is not None:
            out["value"] = self.value
        if self.reference:
            out["reference"] = True
        if self.valqual:
            out["valqual"] = [{"name": n, "value": v} for n, v in self.valqual]
        if self.nmqual:
            out["nmqual"] = [{"name": n, "value": v} for n, v in self.nmqual]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Attribute":
        return cls(d["name"], d.get("value"), bool(d.get("reference")),
                   [(q["name"], q.get("value", "")) for q in d.get("valqual", [])],
                   [(q["name"], q.get("value", "")) for q in d.get("nmqual", [])])


def attrs(*pairs: tuple[str, Any]) -> list[Attribute]:
    """Attributes from (name, value) pairs; empty values are left out, lists give one attribute each."""
    out: list[Attribute] = []
    for name, value in pairs:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v not in (None, ""):
                out.append(Attribute(name, str(v)))
    return out


@dataclass
class Link:
    url: str
    attributes: list[Attribute] = field(default_factory=list)


@dataclass
class Section:
    type: str
    accno: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    subsections: list["Section"] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    def attr(self, name: str) -> str | None:
        return next((a.value for a in self.attributes if a.name.lower() == name.lower()), None)

    def walk(self) -> list["Section"]:
        out = [self]
        for s in self.subsections:
            out.extend(s.walk())
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.accno:
            out["accno"] = self.accno
        out["type"] = self.type
        out["attributes"] = [a.to_json() for a in self.attributes]
        if self.links:
            out["links"] = [{"url": ln.url, "attributes": [a.to_json() for a in ln.attributes]}
                            for ln in self.links]
        if self.subsections:
            out["subsections"] = [s.to_json() for s in self.subsections]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Section":
        subs = []
        for s in d.get("subsections", []):
            # A PageTab table is a list of sections of one type: flatten it.
            subs.extend(cls.from_json(x) for x in (s if isinstance(s, list) else [s]))
        links = []
        for ln in d.get("links", []):
            for x in ln if isinstance(ln, list) else [ln]:
                links.append(Link(x["url"], [Attribute.from_json(a) for a in x.get("attributes", [])]))
        return cls(d["type"], d.get("accno"), [Attribute.from_json(a) for a in d.get("attributes", [])],
                   subs, links)


@dataclass
class Submission:
    section: Section
    accno: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    def attr(self, name: str) -> str | None:
        return next((a.value for a in self.attributes if a.name.lower() == name.lower()), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.accno:
            out["accno"] = self.accno
        out["attributes"] = [a.to_json() for a in self.attributes]
        out["section"] = self.section.to_json()
        out["type"] = "submission"
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Submission":
        return cls(Section.from_json(d["section"]), d.get("accno") or None,
                   [Attribute.from_json(a) for a in d.get("attributes", [])])

    # -- TSV ------------------------------------------------------------------
    def to_tsv(self) -> str:
        lines: list[str] = ["\t".join(["Submission", self.accno or ""]).rstrip("\t")]
        lines += _tsv_attributes(self.attributes)
        _tsv_section(self.section, None, lines, root=True)
        return "\n".join(lines) + "\n"

    @classmethod
    def from_tsv(cls, text: str) -> "Submission":
        return _parse_tsv(text)


def _clean(value: str | None) -> str:
    # TSV cannot hold a tab or a line break in a value: JSON is the canonical form.
    return " ".join((value or "").replace("\t", " ").splitlines())


def _tsv_attributes(attributes: list[Attribute]) -> list[str]:
    out = []
    for a in attributes:
        name = f"<{a.name}>" if a.reference else a.name
        out.append(f"{name}\t{_clean(a.value)}".rstrip("\t") if a.value is not None else name)
        out += [f"({n})\t{_clean(v)}" for n, v in a.nmqual]
        out += [f"[{n}]\t{_clean(v)}" for n, v in a.valqual]
    return out


def _tsv_section(s: Section, parent: str | None, lines: list[str], *, root: bool = False) -> None:
    head = [s.type, s.accno or ""] + ([parent] if parent else [])
    lines += ["", "\t".join(head).rstrip("\t")]
    lines += _tsv_attributes(s.attributes)
    for ln in s.links:
        lines += ["", f"Link\t{ln.url}"] + _tsv_attributes(ln.attributes)
    for sub in s.subsections:
        if sub.subsections and not sub.accno:
            raise ValueError(f"a {sub.type} section with subsections needs an accno for TSV")
        _tsv_section(sub, None if root else s.accno, lines)


def _parse_tsv(text: str) -> Submission:
    blocks: list[list[list[str]]] = [[]]
    for raw in text.splitlines():
        if not raw.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        blocks[-1].append(raw.split("\t"))
    blocks = [b for b in blocks if b]
    if not blocks or blocks[0][0][0] != "Submission":
        raise ValueError("PageTab TSV must start with a 'Submission' line")
    sub_attrs: list[Attribute] = []
    accno = blocks[0][0][1] if len(blocks[0][0]) > 1 and blocks[0][0][1] else None
    root: Section | None = None
    by_accno: dict[str, Section] = {}
    last: Section | None = None
    for i, block in enumerate(blocks):
        head, body = block[0], block[1:]
        target: list[Attribute]
        if i == 0:
            target = sub_attrs
        elif head[0] == "Link":
            if last is None:
                raise ValueError("a Link before any section")
            link = Link(head[1] if len(head) > 1 else "")
            last.links.append(link)
            target = link.attributes
        else:
            sec = Section(head[0], head[1] if len(head) > 1 and head[1] else None)
            if root is None:
                root = sec
            else:
                parent = by_accno.get(head[2]) if len(head) > 2 and head[2] else root
                if parent is None:
                    raise ValueError(f"section {head[0]} names an unknown parent {head[2]!r}")
                parent.subsections.append(sec)
            if sec.accno:
                by_accno[sec.accno] = sec
            last = sec
            target = sec.attributes
        for cells in body:
            name, value = cells[0], (cells[1] if len(cells) > 1 else None)
            if name[:1] in "([" and name[-1:] in ")]":
                if not target:
                    raise ValueError(f"qualifier {name} without an attribute")
                (target[-1].nmqual if name[0] == "(" else target[-1].valqual).append((name[1:-1], value or ""))
            elif name.startswith("<") and name.endswith(">"):
                target.append(Attribute(name[1:-1], value, reference=True))
            else:
                target.append(Attribute(name, value))
    if root is None:
        raise ValueError("PageTab TSV has no root section")
    return Submission(root, accno, sub_attrs)
