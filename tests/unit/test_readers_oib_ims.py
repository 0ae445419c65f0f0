"""Olympus OIB/OIF and Imaris IMS through our bioio plugins, against independent reads.

The references are read here with oiffile and h5py directly (oiffile.imread, the HDF5
datasets), and the physical sizes from the files' own calibration fields, not through
our readers.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import bioio_base.reader
import h5py
import numpy as np
import oiffile
import pytest
from bioio import BioImage

from microfair.imaging import candidate_plugins, open_image, plugins, reader_identity
from microfair.imaging import ims_plugin, oib_plugin

OIB = "olympus_fv1000_3ch.oib"
IMS = "imaris_ptk2_cell.ims"


@pytest.fixture(scope="module")
def oib(testdata: Path) -> Path:
    return testdata / OIB


@pytest.fixture(scope="module")
def ims(testdata: Path) -> Path:
    return testdata / IMS


def _ims_reference(path: Path) -> tuple[np.ndarray, dict[str, str], list[str]]:
    """(T, C, Z, Y, X) pixels cropped to DataSetInfo/Image, the Image attributes, the channel names."""
    def text(group: h5py.Group, key: str) -> str:
        return group.attrs[key].tobytes().decode("latin-1")

    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"]
        info = {k: text(image, k) for k in image.attrs}
        z, y, x = (int(info[k]) for k in "ZYX")
        level = f["DataSet/ResolutionLevel 0"]
        n_t, n_c = len(level), len(level["TimePoint 0"])
        data = np.stack([np.stack([level[f"TimePoint {t}/Channel {c}/Data"][:z, :y, :x] for c in range(n_c)])
                         for t in range(n_t)])
        names = [text(f[f"DataSetInfo/Channel {c}"], "Name") for c in range(n_c)]
    return data, info, names


def test_the_facade_lists_each_format_reader_by_name() -> None:
    assert [p.name for p in candidate_plugins("a.oib")][0] == "microfair-oib"
    assert [p.name for p in candidate_plugins("a.OIF")][0] == "microfair-oib"
    assert [p.name for p in candidate_plugins("a.ims")][0] == "microfair-ims"
    assert {".lif", ".oib", ".oif", ".ims"} <= set(plugins.ReaderMetadata.get_supported_extensions())
    assert issubclass(plugins.ReaderMetadata.get_reader(), bioio_base.reader.Reader)


def test_every_sub_plugin_of_the_facade_loads_and_follows_the_contract() -> None:
    assert plugins.unavailable_sub_plugins() == ()
    loaded = plugins.sub_plugins()
    assert [p.module.__name__ for p in loaded] == list(plugins.SUB_PLUGINS)
    names = [p.name for p in loaded]
    assert len(set(names)) == len(names) and all(n.startswith("microfair-") for n in names)
    for plugin in loaded:
        assert plugin.extensions and all(e.startswith(".") for e in plugin.extensions), plugin.name
        assert issubclass(plugin.reader, bioio_base.reader.Reader), plugin.name
        assert plugin.reader.plugin_name == plugin.name  # reader_identity reports this name


def test_the_facade_picks_the_reader_by_content(oib: Path, ims: Path) -> None:
    for path, expected in ((oib, oib_plugin.Reader), (ims, ims_plugin.Reader)):
        img = BioImage(path, reader=plugins.Reader)
        assert type(img.reader) is expected


def test_oib_pixels_sizes_and_channels(oib: Path) -> None:
    reference = oiffile.imread(oib)  # (C, Y, X)
    img = open_image(oib)
    assert reader_identity(img)[0] == "microfair-oib"
    assert img.dims.order == "TCZYX" and img.shape == (1, 3, 1, 256, 256)
    np.testing.assert_array_equal(img.get_image_data("CYX"), reference)
    assert not np.array_equal(reference[0], reference[1])  # channels are really different planes
    with oiffile.OifFile(oib) as oif:
        settings = oif.mainfile
        names = [settings[f"Channel {i} Parameters"]["CH Name"] for i in (1, 2, 3)]
        width_um = settings["Reference Image Parameter"]["WidthConvertValue"]  # the vendor's own pixel size
        height_um = settings["Reference Image Parameter"]["HeightConvertValue"]
    sizes = img.physical_pixel_sizes
    assert sizes.X == pytest.approx(width_um, rel=1e-3) and sizes.Y == pytest.approx(height_um, rel=1e-3)
    assert sizes.Z is None  # a single plane has no z spacing
    assert [n.split(" (")[0] for n in img.channel_names] == names
    assert "Alexa Fluor 546" in img.channel_names[1]  # the dye, when the file names one


def test_oib_ome_metadata(oib: Path) -> None:
    ome = open_image(oib).ome_metadata
    objective = ome.instruments[0].objectives[0]
    assert objective.lens_na == pytest.approx(0.75) and objective.nominal_magnification == pytest.approx(40)
    assert "UPLFLN" in objective.model
    channels = ome.images[0].pixels.channels
    assert [c.excitation_wavelength for c in channels] == [488, 543, 543]
    assert channels[1].emission_wavelength == 572 and channels[0].emission_wavelength is None  # 0 = not recorded
    assert [c.fluor for c in channels] == [None, "Alexa Fluor 546", None]  # the file's DyeName ("" and "None" are none)
    assert ome.images[0].pixels.significant_bits == 12
    assert ome.images[0].acquisition_date.year == 2012


@pytest.mark.parametrize(("model", "immersion"), [
    ("UPLFLN 40X NA:0.75", None), ("UPLSAPO 60X O NA:1.35", "Oil"), ("UPLSAPO  60X W  NA:1.20", "Water"),
    ("UPLSAPO 30X SIL NA:1.05", "Other"),
])
def test_olympus_objective_names_give_the_immersion(model: str, immersion: str | None) -> None:
    from microfair.imaging.ome_build import immersion_value

    assert immersion_value(oib_plugin._immersion(" ".join(model.split()))) == immersion


def test_oib_lazy_chunks_are_planes_and_pickle(oib: Path) -> None:
    img = open_image(oib)
    lazy = img.dask_data
    assert max(lazy.chunks[1]) == 1 and lazy.chunks[3:] == ((256,), (256,))
    again = pickle.loads(pickle.dumps(lazy))  # what a distributed or process scheduler does with it
    np.testing.assert_array_equal(again[0, :, 0].compute(scheduler="synchronous"), oiffile.imread(oib))


def test_oif_with_its_companion_folder(oib: Path, tmp_path: Path) -> None:
    with oiffile.OibFileSystem(oib) as fs:
        fs.saveas_oif(str(tmp_path))
    oif = next(tmp_path.glob("*.oif"))
    img = open_image(oif)
    assert reader_identity(img)[0] == "microfair-oib"
    np.testing.assert_array_equal(img.get_image_data("CYX"), oiffile.imread(oib))


def test_ims_pixels_sizes_and_channels(ims: Path) -> None:
    reference, info, names = _ims_reference(ims)
    img = open_image(ims)
    assert reader_identity(img)[0] == "microfair-ims"
    assert img.shape == reference.shape == (1, 4, 32, 256, 256)
    np.testing.assert_array_equal(img.dask_data.compute(), reference)
    np.testing.assert_array_equal(img.reader._read_immediate().values, reference)
    assert img.channel_names == names == ["Kinetochores", "Microtubules", "DNA", "Dynactin"]
    # Imaris extents are voxel edges: size = (ExtMax - ExtMin) / count
    expected = [(float(info[f"ExtMax{a}"]) - float(info[f"ExtMin{a}"])) / int(info[k])
                for a, k in (("2", "Z"), ("1", "Y"), ("0", "X"))]
    assert tuple(img.physical_pixel_sizes) == pytest.approx(tuple(expected))
    assert img.physical_pixel_sizes.Z == pytest.approx(0.2)


def test_ims_metadata_colours_and_resolution_levels(ims: Path) -> None:
    img = open_image(ims)
    ome = img.ome_metadata
    channels = ome.images[0].pixels.channels
    assert channels[0].color.as_rgb_tuple()[:3] == (255, 0, 0) and channels[1].color.as_rgb_tuple()[:3] == (0, 255, 0)
    assert channels[0].emission_wavelength == 500 and channels[0].excitation_wavelength == 500
    assert img.reader.source_pyramid == [{"level": 0, "shape": [32, 256, 256], "stored_shape": [32, 256, 256]}]
    annotation = ome.structured_annotations.map_annotations[-1]
    assert annotation.namespace == ims_plugin.PYRAMID_NAMESPACE and "level 0" in annotation.value.ms[0].k


def test_ims_crops_padding_and_reads_every_time_point(tmp_path: Path) -> None:
    """Imaris pads Data to the chunk size: a synthetic 2 t x 2 c file, 5 x 30 x 20 stored as 8 x 32 x 32."""
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 4000, size=(2, 2, 5, 30, 20), dtype=np.uint16)
    path = tmp_path / "padded.ims"

    def chars(text: str) -> np.ndarray:
        return np.frombuffer(text.encode(), dtype="S1")

    with h5py.File(path, "w") as f:
        for t in range(2):
            for c in range(2):
                padded = np.zeros((8, 32, 32), dtype=np.uint16)
                padded[:5, :30, :20] = truth[t, c]
                f.create_dataset(f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}/Data", data=padded,
                                 chunks=(4, 32, 32), compression="gzip")
                f.create_dataset(f"DataSet/ResolutionLevel 1/TimePoint {t}/Channel {c}/Data",
                                 data=padded[::2, ::2, ::2])
                level1 = f[f"DataSet/ResolutionLevel 1/TimePoint {t}/Channel {c}"]
                for axis, n in zip("ZYX", (3, 15, 10)):  # level 1's own size, without padding
                    level1.attrs[f"ImageSize{axis}"] = chars(str(n))
                f.require_group(f"DataSetInfo/Channel {c}").attrs["Name"] = chars(f"ch{c}")
        image = f["DataSetInfo"].create_group("Image")
        for key, value in {"X": "20", "Y": "30", "Z": "5", "ExtMin0": "0", "ExtMax0": "10", "ExtMin1": "0",
                           "ExtMax1": "15", "ExtMin2": "0", "ExtMax2": "5", "Unit": "um"}.items():
            image.attrs[key] = chars(value)
        times = f["DataSetInfo"].create_group("TimeInfo")
        times.attrs["TimePoint1"] = chars("2024-03-01 10:00:00.000")
        times.attrs["TimePoint2"] = chars("2024-03-01 10:00:30.000")
    img = open_image(path)
    assert img.shape == truth.shape
    np.testing.assert_array_equal(img.dask_data.compute(), truth)
    np.testing.assert_array_equal(img.dask_data[1, 0, -1, -1, -1].compute(), truth[1, 0, -1, -1, -1])
    assert tuple(img.physical_pixel_sizes) == pytest.approx((1.0, 0.5, 0.5))
    assert img.time_interval.total_seconds() == pytest.approx(30)
    assert img.reader.source_pyramid == [{"level": 0, "shape": [5, 30, 20], "stored_shape": [8, 32, 32]},
                                         {"level": 1, "shape": [3, 15, 10], "stored_shape": [4, 16, 16]}]
    assert set(img.dask_data.chunks[2]) == {1}  # one plane per dask chunk


def test_an_oif_and_its_folder_are_one_acquisition(facility_config, ledger, oib: Path, tmp_path: Path) -> None:
    """The plane TIFFs in <name>.oif.files/ are not acquisitions of their own: collect copies the folder
    with the .oif (microfair-oib declares it, microfair.companions), and the raw copy reads."""
    import os
    import time

    from microfair.collect import collect, scan
    from microfair.ingest import validate_dataset

    with oiffile.OibFileSystem(oib) as fs:
        fs.saveas_oif(str(tmp_path / "export"))
    exported = next((tmp_path / "export").glob("*.oif"))
    name = "2024-05-02_DEMO_Cells_ALebon_Control_RAW_v01.oif"
    dest = facility_config.landing_zones[0].path / "DEMO" / name
    dest.parent.mkdir(parents=True)
    exported.rename(dest)
    exported.with_name(exported.name + ".files").rename(dest.with_name(name + ".files"))
    old = time.time() - 3600
    for f in [dest, *dest.with_name(name + ".files").iterdir()]:
        os.utime(f, (old, old))
    ready = scan(facility_config, ledger).ready
    assert [Path(a.relpath).name for a in ready] == [name]  # not s_C001.tif, s_C002.tif ...
    collect(facility_config, ledger, ready[0])
    raw = Path(ledger.require(ready[0].uid).raw_path)
    assert sorted(p.name for p in raw.with_name(name + ".files").iterdir()) == sorted(
        p.name for p in dest.with_name(name + ".files").iterdir())
    assert validate_dataset(facility_config, ledger, ready[0].uid) == "validated"
    np.testing.assert_array_equal(open_image(raw).get_image_data("CYX"), oiffile.imread(oib))


def test_ims_planes_of_one_hdf5_chunk_are_decoded_once(ims: Path, monkeypatch) -> None:
    """The sample's gzip chunks hold 16 planes: reading its 32 planes of a channel opens 2 chunks, not 32."""
    img = open_image(ims)
    reads = []
    real = ims_plugin.h5py.File

    def counting(*args, **kwargs):
        reads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ims_plugin.h5py, "File", counting)
    ims_plugin._LAST_BLOCK.__dict__.clear()
    planes = img.dask_data[0, 1].compute(scheduler="synchronous")
    assert len(reads) == 2
    reference, _, _ = _ims_reference(ims)
    np.testing.assert_array_equal(planes, reference[0, 1])
