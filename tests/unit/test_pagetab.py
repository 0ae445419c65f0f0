"""PageTab builder and local validation: the built submission has the structure of real BIA submissions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from microfair.deposit import DepositSelection, load_study, parse_study, plan_deposit, validate_plan
from microfair.deposit.datacite import datacite_payload
from microfair.deposit.pagetab import Section, Submission
from microfair.deposit.validate import validate_study
from tests.support.synthetic_ingest import ingest_synthetic

EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"
SAMPLES = Path("/work/shared/reference/biostudies")
# Attributes we write that the three reference submissions happen not to use (all are in the template).
EXTRAS = {"study": {"acknowledgements"}, "specimen": {"signal/contrast mechanism"},
          "organisation": {"address", "rorid", "url"}, "biosample": {"intrinsic variable"},
          "associations": {"image analysis"}}


def _norm(t: str) -> str:
    return t.lower().replace("organization", "organisation")


def _shape(sub: Submission) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    types: dict[str, set[str]] = {}
    edges: set[tuple[str, str]] = set()

    def walk(s: Section, parent: str | None) -> None:
        t = _norm(s.type)
        types.setdefault(t, set()).update(a.name.lower() for a in s.attributes)
        if parent:
            edges.add((parent, t))
        for c in s.subsections:
            walk(c, t)

    walk(sub.section, None)
    return types, edges


def _references_resolve(sub: Submission) -> list[str]:
    """Problems with references: affiliations → organisation accnos; Associations → section titles."""
    secs = sub.section.walk()
    accnos = {s.accno for s in secs if _norm(s.type) == "organisation"}
    titles: dict[str, set[str]] = {}
    for s in secs:
        if s.attr("Title"):
            titles.setdefault(_norm(s.type), set()).add(s.attr("Title"))
    bad = []
    for s in secs:
        for a in s.attributes:
            if a.reference and a.value not in accnos:
                bad.append(f"{s.type}: {a.name} -> {a.value}")
        if _norm(s.type) == "associations":
            for a in s.attributes:
                if _norm(a.name) in titles and a.value not in titles[_norm(a.name)]:
                    bad.append(f"association {a.name} -> {a.value}")
    return bad


@pytest.fixture(scope="module")
def samples() -> list[Submission]:
    if not SAMPLES.is_dir():
        pytest.skip("reference BIA submissions not available")
    return [Submission.from_json(json.loads(p.read_text())) for p in sorted(SAMPLES.glob("*.json"))]


@pytest.fixture
def plan(facility_config, ledger):
    ingest_synthetic(facility_config, ledger, n=2)
    study, problems = load_study(EXAMPLE)
    assert problems == []
    return plan_deposit(facility_config, ledger, study, DepositSelection(project="DEMO"))


def test_built_pagetab_has_the_structure_of_the_real_bia_submissions(plan, samples):
    built = Submission.from_json(json.loads(plan.pagetab().dumps()))  # through JSON, as the server parses it
    ours, our_edges = _shape(built)
    ref_types: dict[str, set[str]] = {}
    ref_edges: set[tuple[str, str]] = set()
    for s in samples:
        t, e = _shape(s)
        for k, v in t.items():
            ref_types.setdefault(k, set()).update(v)
        ref_edges |= e
    v5 = next(s for s in samples if s.attr("Template") == "BioImages.v5")
    v5_types, _ = _shape(v5)
    for required in ("study", "biosample", "specimen", "image acquisition", "study component", "associations",
                     "author", "organisation"):
        assert required in ours, required
    assert set(ours) <= set(ref_types), set(ours) - set(ref_types)
    assert our_edges <= ref_edges, our_edges - ref_edges
    for t, names in ours.items():
        assert names - ref_types[t] - EXTRAS.get(t, set()) == set(), (t, names - ref_types[t])
        if t in v5_types:
            assert v5_types[t] - {"orcid", "e-mail"} <= names, (t, v5_types[t] - names)
    # the reference rules hold in the real samples (S-BIAD2808 has a few stale association titles) and in ours
    for s in samples:
        n = sum(len(x.attributes) for x in s.section.walk() if _norm(x.type) == "associations")
        assert len(_references_resolve(s)) <= n // 4, s.accno
    assert _references_resolve(built) == []
    top = {a.name for a in built.attributes}
    assert {a.name for a in v5.attributes} - {"DOI"} <= top
    assert built.attr("Template") == "BioImages.v5" and built.accno is None


def test_image_acquisition_comes_from_the_ledger_records(plan, ledger):
    acqs = plan.acquisitions()
    assert len(acqs) == 1 and sorted(acqs[0].uids) == sorted(plan.uids())
    rembi = ledger.get_record(plan.uids()[0], "rembi")
    px = rembi["image_data"]["scenes"][0]["pixel_voxel_size_um"]
    assert "DAPI" in acqs[0].parameters and "GFP" in acqs[0].parameters
    assert f"X {px['X']:g}" in acqs[0].parameters
    assert acqs[0].methods == ["fluorescence microscopy"]  # the files do not say: the study file fills it
    files = plan.file_lists()
    (name, entries), = files.items()
    assert [e["path"] for e in entries] == [f.remote for f in plan.files()]
    assert all(e["path"].startswith("DEMO/Cells/e1/") and e["size"] > 0 for e in entries)


def test_tsv_round_trips_to_the_same_tree(plan, samples):
    for sub in [plan.pagetab(), *samples]:
        again = Submission.from_tsv(sub.to_tsv())
        a, b = sub.to_json(), again.to_json()
        text = json.dumps(a, ensure_ascii=False)
        if "\\n" not in text and "\\t" not in text:
            assert a == b
        else:  # TSV values are single lines: compare the structure
            assert _shape(again) == _shape(sub)


def test_tsv_uses_pagetab_conventions(plan):
    tsv = plan.pagetab().to_tsv()
    assert tsv.startswith("Submission\n") or tsv.startswith("Submission\t")
    assert "\n<affiliation>\to1\n" in tsv
    assert "\n[URL]\thttps://creativecommons.org/licenses/by/4.0/legalcode\n" in tsv
    assert "\nAssociations\tasso-1-1\tStudy Component-1\n" in tsv


def test_every_missing_field_is_listed_at_once_with_its_path(facility_config, ledger):
    ingest_synthetic(facility_config, ledger, n=1)
    data = yaml.safe_load(EXAMPLE.read_text())
    data["title"] = "Too short a title"
    del data["description"], data["keywords"], data["license"]
    data["authors"][0].pop("email")
    data["authors"][0]["affiliations"] = []
    data["biosamples"][0].pop("organism")
    data["biosamples"][0].pop("biological_entity")
    data["specimens"][0].pop("sample_preparation")
    data.pop("image_acquisitions")
    data["components"][0].pop("description")
    data["components"].append({"name": "Nothing selected", "description": "no such study",
                               "select": {"study": "Nope"}})
    data["release_date"] = (dt.date.today() + dt.timedelta(days=800)).isoformat()
    study, problems = parse_study(data)
    plan = plan_deposit(facility_config, ledger, study, DepositSelection(project="DEMO"))
    paths = {p.path for p in problems + validate_plan(plan)}
    acq = plan.acquisitions()[0].title
    assert paths == {
        "title", "description", "keywords", "license", "release_date",
        "authors[0].email", "authors[0].affiliations",
        "biosamples[0].organism.scientific_name", "biosamples[0].biological_entity",
        "specimens[0].sample_preparation", "components[0].description", "components[1].files",
        f"components[0].image_acquisitions[{acq}].imaging_instrument",
        f"components[0].image_acquisitions[{acq}].imaging_method",
    }


def test_bad_types_and_unknown_keys_are_reported_not_fatal():
    study, problems = parse_study({"title": "A long enough title for the archive", "keywords": {"a": 1},
                                   "authors": [{"name": "A B", "orcid": "12", "emial": "x@y.org"}]})
    assert {p.path for p in problems} == {"keywords", "authors[0].orcid", "authors[0].emial"}
    assert study.title and study.authors[0].name == "A B"
    assert any(p.path == "keywords" for p in validate_study(study))


def test_licence_must_be_one_the_archive_accepts():
    study, _ = parse_study({"license": "All rights reserved"})
    assert any(p.path == "license" and "not accepted" in p.message for p in validate_study(study))
    for ok in ("CC0", "cc0-1.0", "CC-BY-4.0", "CC BY 4.0"):
        study, _ = parse_study({"license": ok})
        assert not any(p.path == "license" for p in validate_study(study)), ok


def test_datacite_payload_has_the_mandatory_properties():
    study, _ = load_study(EXAMPLE)
    body = datacite_payload(study, accession="S-BIAD123", bia_doi="10.6019/S-BIAD123", prefix="10.80000",
                            publisher="Example institute")
    a = body["data"]["attributes"]
    assert body["data"]["type"] == "dois" and "event" not in a and a["prefix"] == "10.80000"
    assert a["creators"][0]["familyName"] == "Lebon" and a["creators"][0]["givenName"] == "Ana"
    assert a["creators"][0]["nameIdentifiers"][0]["nameIdentifierScheme"] == "ORCID"
    assert a["creators"][0]["affiliation"][0]["affiliationIdentifierScheme"] == "ROR"
    assert a["titles"][0]["title"] == study.title and a["publisher"]["name"] == "Example institute"
    assert isinstance(a["publicationYear"], int) and a["types"]["resourceTypeGeneral"] == "Dataset"
    assert a["url"].endswith("/S-BIAD123") and a["schemaVersion"] == "http://datacite.org/schema/kernel-4"
    assert {"relatedIdentifier": "10.6019/S-BIAD123", "relatedIdentifierType": "DOI",
            "relationType": "IsIdenticalTo"} in a["relatedIdentifiers"]
    assert a["rightsList"][0]["rightsIdentifier"] == "CC-BY-4.0"


def test_cli_validate_pagetab_and_datacite_export(facility_config, ledger, tmp_path, capsys):
    import yaml as _yaml

    from microfair.cli import main

    ingest_synthetic(facility_config, ledger, n=1)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(_yaml.safe_dump(facility_config.model_dump(mode="json")))
    assert main(["--config", str(cfg_path), "deposit", "validate", str(EXAMPLE), "--project", "DEMO"]) == 0
    assert main(["--config", str(cfg_path), "deposit", "pagetab", str(EXAMPLE), "--project", "DEMO",
                 "--format", "tsv"]) == 0
    assert capsys.readouterr().out.count("Study Component\tStudy Component-1") == 1
    assert main(["--config", str(cfg_path), "deposit", "validate", str(EXAMPLE), "--project", "NOPE"]) == 1
    assert "components[0].files" in capsys.readouterr().err
    assert main(["--config", str(cfg_path), "datacite", "export", "S-BIAD999"]) == 1
