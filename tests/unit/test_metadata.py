"""extract_metadata, the sidecar model and the Dublin Core / REMBI records."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from ome_types import from_xml

from microfair.config.core import FacilityInfo, ProjectDefaults
from microfair.metadata import extract_metadata
from microfair.metadata.extract import ImageMetadata, ObjectiveInfo, SceneMetadata, ChannelInfo
from microfair.metadata.records import DatasetFacts, build_dublin_core, build_rembi
from microfair.metadata.sidecar import DC_ELEMENTS, SidecarError, load_sidecar, sidecar_path_for
from test_imaging_samples import czi, ome_tiff

SIDECAR = """
study:
  title: Microalgae under nitrogen starvation
  description: Confocal time course of lipid droplets in Chlamydomonas.
  keywords: [microalgae, lipid droplets]
  authors:
    - {first_name: Ana, last_name: Lebon, orcid: 0000-0002-1825-0097, affiliation: IBPC}
  license: CC0-1.0
  funding: [{funder: ANR, grant_id: ANR-21-CE20-0001}]
biosample:
  organism: Chlamydomonas reinhardtii
  ncbi_taxon: 3055
  biological_entity: whole cells
  variables: nitrogen starvation time
specimen:
  sample_preparation: live cells on agarose pad
  signal: BODIPY 493/503
image_acquisition:
  imaging_method: confocal microscopy
  imaging_method_id: "FBbi:00000251"
dublin_core:
  coverage: Paris, 2024
"""


def tokens(**kw):
    base = dict(date=date(2024, 3, 1), project="TNT", creator="ALebon", kind="RAW",
                condition="Controle", version=1)
    return SimpleNamespace(**(base | kw))


def sample_meta() -> ImageMetadata:
    return ImageMetadata(
        file_name="2024-03-01_TNT_ALebon_Controle_RAW_v01.czi", reader="bioio-czi", reader_version="3.0.1",
        scenes=[SceneMetadata(0, "Image:0", {"T": 1, "C": 1, "Z": 1, "Y": 4, "X": 4}, "uint16",
                              {"Z": None, "Y": 0.5, "X": 0.5}, [ChannelInfo("DAPI", 461.0)])],
        instrument="Axio Observer.Z1 / 7", manufacturer="Zeiss",
        objective=ObjectiveInfo("Plan-Apochromat 20x/0.8", 0.8, 20.0, "Air"),
        acquisition_date=datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc),
        acquisition_software=None, ome_xml="<OME/>", ome_source="reader",
    )


FACTS = DatasetFacts("ds-0001", "2024-03-01_TNT_ALebon_Controle_RAW_v01.czi", 1234, "ab" * 32,
                     "/raw/TNT/x.czi", "axio-observer")


def test_extract_ome_tiff(tmp_path: Path) -> None:
    ome_tiff(tmp_path / "cells.ome.tiff")
    meta = extract_metadata(tmp_path / "cells.ome.tiff")
    assert meta.reader == "bioio-ome-tiff" and meta.reader_version
    (scene,) = meta.scenes
    assert scene.dims == {"T": 2, "C": 2, "Z": 3, "Y": 32, "X": 48}
    assert scene.pixel_size_um == {"Z": 1.5, "Y": 0.25, "X": 0.25}
    assert [c.name for c in scene.channels] == ["DAPI", "GFP"]
    assert scene.time_increment_s == pytest.approx(30.0)
    assert meta.ome_source == "reader"
    assert from_xml(meta.ome_xml).images[0].pixels.size_z == 3
    json.dumps(meta.to_dict())


def test_extract_builds_valid_ome_when_the_reader_has_none(tmp_path: Path) -> None:
    czi(tmp_path / "rgb.czi", rgb=True)  # bioio-czi cannot convert pylibCZIrw's minimal metadata
    meta = extract_metadata(tmp_path / "rgb.czi")
    (scene,) = meta.scenes
    assert scene.dims["S"] == 3 and scene.pixel_size_um["X"] == pytest.approx(0.5)
    assert meta.instrument is None and meta.objective is None  # not invented
    if meta.ome_source == "microfair":
        assert any("built by microfair" in n for n in meta.notes)
    ome = from_xml(meta.ome_xml)
    pixels = ome.images[0].pixels
    assert (pixels.size_t, pixels.size_z, pixels.size_y, pixels.size_x) == (2, 3, 40, 56)
    assert pixels.channels[0].name == "Brightfield"


def test_sidecar_loads_next_to_the_image(tmp_path: Path) -> None:
    image = tmp_path / "a_v01.ome.tiff"
    assert sidecar_path_for(image) == tmp_path / "a_v01.meta.yaml"
    assert load_sidecar(image) is None
    (tmp_path / "a_v01.meta.yaml").write_text(SIDECAR)
    sc = load_sidecar(image)
    assert sc.biosample.ncbi_taxon == "3055"
    assert sc.biosample.experimental_variables == ["nitrogen starvation time"]
    assert sc.specimen.signal_contrast_mechanism == "BODIPY 493/503"
    assert sc.study.authors[0].display_name == "Lebon, Ana"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("study:\n  titel: x\n", "study.titel"),
        ("study:\n  authors: [{first_name: A}]\n", "study.authors.0.last_name"),
        ("biosample:\n  ncbi_taxon: human\n", "biosample.ncbi_taxon"),
        ("dublin_core:\n  author: x\n", "dublin_core"),
        ("study: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_sidecar_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "x.meta.yaml"
    path.write_text(text)
    with pytest.raises(SidecarError, match=key.replace(".", r"\.")):
        load_sidecar(path)


def test_dublin_core_has_all_15_elements_and_says_what_is_missing() -> None:
    dc = build_dublin_core(sample_meta(), FACTS, None, None, ProjectDefaults(), FacilityInfo(name="PIC"))
    assert tuple(k for k in dc if k != "missing") == DC_ELEMENTS
    assert dc["identifier"] == "ds-0001" and dc["date"] == "2024-03-01"
    assert dc["rights"] == "CC-BY-4.0" and dc["publisher"] == "PIC" and dc["language"] == "zxx"
    assert dc["creator"] is None and dc["description"] is None  # nobody said: nothing invented
    assert {"creator", "description", "subject", "coverage"} <= set(dc["missing"])


def test_dublin_core_from_sidecar_tokens_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "x.meta.yaml").write_text(SIDECAR)
    sc = load_sidecar(tmp_path / "x.meta.yaml")
    dc = build_dublin_core(sample_meta(), FACTS, tokens(), sc, ProjectDefaults(),
                           FacilityInfo(name="PIC", institution="IBPC"))
    assert dc["creator"] == ["Lebon, Ana"]
    assert dc["title"].startswith("Microalgae under nitrogen starvation")
    assert "Chlamydomonas reinhardtii" in dc["subject"] and "microalgae" in dc["subject"]
    assert dc["rights"] == "CC0-1.0" and dc["coverage"] == "Paris, 2024"
    assert dc["relation"] == ["project TNT"] and dc["publisher"] == "PIC, IBPC"
    assert dc["missing"] == []
    no_sidecar = build_dublin_core(sample_meta(), FACTS, tokens(), None, None, None)
    assert no_sidecar["creator"] == ["ALebon"]


def test_rembi_shape_and_sources(tmp_path: Path) -> None:
    (tmp_path / "x.meta.yaml").write_text(SIDECAR)
    sc = load_sidecar(tmp_path / "x.meta.yaml")
    rembi = build_rembi(sample_meta(), FACTS, tokens(), sc, ProjectDefaults(), FacilityInfo(name="PIC"))
    assert set(rembi) == {"study", "study_component", "biosample", "specimen", "image_acquisition",
                          "image_data", "missing"}
    assert rembi["biosample"]["organism"] == {"scientific_name": "Chlamydomonas reinhardtii",
                                              "common_name": None, "ncbi_taxon": "3055"}
    assert rembi["image_acquisition"]["imaging_method"]["ontology_id"] == "FBbi:00000251"
    assert rembi["image_acquisition"]["imaging_instrument"] == "Zeiss Axio Observer.Z1 / 7"
    params = rembi["image_acquisition"]["image_acquisition_parameters"]
    assert params["numerical_aperture"] == 0.8 and params["magnification"] == 20.0
    data = rembi["image_data"]
    assert data["sha256"] == "ab" * 32 and data["type"] == "raw acquisition" and data["version"] == 1
    assert data["scenes"][0]["pixel_voxel_size_um"] == {"Y": 0.5, "X": 0.5}
    assert "specimen.growth_protocol" in rembi["missing"]
    assert "biosample.organism.scientific_name" not in rembi["missing"]
    json.dumps(rembi)


def test_rembi_uses_project_defaults_and_lists_the_gaps() -> None:
    defaults = ProjectDefaults(title="Algae atlas", organism="Chlamydomonas reinhardtii",
                               ncbi_taxon="3055", imaging_method="bright-field microscopy")
    rembi = build_rembi(sample_meta(), FACTS, None, None, defaults, FacilityInfo(name="PIC"))
    assert rembi["study"]["title"] == "Algae atlas"
    assert rembi["biosample"]["organism"]["ncbi_taxon"] == "3055"
    assert rembi["image_acquisition"]["imaging_method"]["value"] == "bright-field microscopy"
    assert rembi["image_acquisition"]["imaging_method"]["ontology_id"] is None
    assert "image_acquisition.imaging_method.ontology_id" in rembi["missing"]
    assert "study.authors" in rembi["missing"] and "study_component.name" in rembi["missing"]
