"""The microfair command: same functions as the DAGs, clear messages and exit codes."""

import json
import subprocess
import sys

import pytest

from microfair.cli import main
from microfair.synthetic import textured_stack, write_ome_tiff


def test_config_init_then_status(tmp_path, capsys):
    assert main(["config", "init", str(tmp_path / "f")]) == 0
    cfg = tmp_path / "f" / "microfair.yaml"
    assert cfg.exists()
    assert main(["--config", str(cfg), "status"]) == 0
    assert "0 dataset(s)" in capsys.readouterr().out
    assert main(["--config", str(cfg), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"] == 0


def test_check_name_exit_code_and_json(capsys):
    good = "2023-01-15_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi"
    assert main(["check-name", good]) == 0
    assert main(["check-name", good, "bad name.czi", "--json"]) == 1
    out = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [r["valid"] for r in out] == [True, False] and out[1]["suggestion"]


def test_inspect_prints_metadata_json(tmp_path, capsys):
    f = write_ome_tiff(tmp_path / "a.ome.tiff", textured_stack((2, 2, 32, 48)), channels=["DAPI", "GFP"])
    assert main(["inspect", str(f)]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["scenes"][0]["dims"]["X"] == 48 and "ome_xml" not in meta
    assert [c["name"] for c in meta["scenes"][0]["channels"]] == ["DAPI", "GFP"]


@pytest.mark.parametrize("args, message", [
    (["inspect", "/nonexistent.czi"], "no such file"),
    (["--config", "/nonexistent.yaml", "status"], "cannot read configuration"),
])
def test_bad_input_is_a_message_not_a_traceback(args, message, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_file_exit_code(tmp_path, capsys):
    bad = tmp_path / "x.czi"
    bad.write_bytes(b"\x00garbage" * 100)
    assert main(["inspect", str(bad)]) == 1
    assert "x.czi" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "microfair.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("check-name", "inspect", "convert", "qc", "status", "config"):
        assert command in out.stdout


# --------------------------------------------------------------------------- issue 11, item 10

RST = ("``", ":func:", ":class:", ":mod:", ":meth:", ":attr:", ".. ")


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_help_is_plain_text_everywhere():
    from microfair.cli import build_parser

    parser = build_parser()
    pages = {"microfair": parser.format_help(), **{n: s.format_help() for n, s in _subparsers(parser)}}
    assert "ingest" in pages and "Exit codes" in pages["microfair"] and "Exit codes" in pages["ingest"]
    for name, text in pages.items():
        assert not [m for m in RST if m in text], (name, text)


def _twelve_bit(tmp_path, name, significant_bits=None):
    import numpy as np
    import tifffile

    from scipy import ndimage

    rng = np.random.default_rng(3)
    spots = np.zeros((96, 96))
    spots[rng.integers(0, 96, 30), rng.integers(0, 96, 30)] = 1.0
    level = ndimage.gaussian_filter(spots, 2.0)
    data = np.clip(rng.poisson(700 + 2300 * level / level.max()), 0, 4095).astype(np.uint16)[None, None]
    meta = {"axes": "CZYX", **({"SignificantBits": significant_bits} if significant_bits else {})}
    tifffile.imwrite(tmp_path / name, data, ome=True, photometric="minisblack", metadata=meta)
    return tmp_path / name


def test_qc_exit_code_follows_the_flags(tmp_path, capsys):
    flagged = _twelve_bit(tmp_path, "dtype.ome.tiff")  # 12-bit data measured against uint16: dim
    assert main(["qc", str(flagged)]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["passed"] is False and "dynamic range" not in err and "intensity range" in err
    fine = _twelve_bit(tmp_path, "twelve.ome.tiff", significant_bits=12)
    assert main(["qc", str(fine)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["passed"] is True and body["scenes"][0]["channels"][0]["range_source"] == "SignificantBits=12"
    assert main(["inspect", str(fine)]) == 0  # the bit depth is part of the recorded metadata
    assert json.loads(capsys.readouterr().out)["scenes"][0]["significant_bits"] == 12


def test_inspect_never_prints_a_reader_traceback(tmp_path):
    """A truncated OME-TIFF: tifffile and bioio log errors (with tracebacks under --debug); one line by default."""
    import numpy as np

    good = write_ome_tiff(tmp_path / "t.ome.tiff", np.zeros((1, 1, 256, 256), dtype=np.uint16) + 7)
    bad = tmp_path / "trunc.ome.tiff"
    bad.write_bytes(good.read_bytes()[:5000])
    out = subprocess.run([sys.executable, "-m", "microfair.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("microfair: trunc.ome.tiff: damaged — truncated or corrupt"), out.stderr


def test_an_unexpected_reader_error_is_one_line_and_the_traceback_is_debug(tmp_path, capsys, monkeypatch):
    import microfair.metadata

    def broken(path):
        raise ValueError("axes don't match array")

    monkeypatch.setattr(microfair.metadata, "extract_metadata", broken)
    f = write_ome_tiff(tmp_path / "a.ome.tiff", textured_stack((1, 1, 16, 16)))
    assert main(["inspect", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "microfair: a.ome.tiff: cannot be read: ValueError: axes don't match array"
    assert main(["--debug", "inspect", str(f)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_convert_prints_a_short_summary_or_the_whole_result(tmp_path, capsys):
    f = write_ome_tiff(tmp_path / "a.ome.tiff", textured_stack((2, 3, 300, 280)))
    out_zarr = tmp_path / "a.ome.zarr"
    assert main(["convert", str(f), str(out_zarr)]) == 0
    text = capsys.readouterr().out
    assert len(text) < 1000 and str(out_zarr) in text
    assert "3x2x300x280" not in text and "1x2x3x300x280 uint16" in text and "2 level(s)" in text
    assert " s" in text and "KiB" in text
    assert main(["convert", str(f), str(out_zarr)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "--json", "--overwrite", str(f), str(out_zarr)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["path"] == str(out_zarr) and body["scenes"][0]["levels"][0] == [1, 2, 3, 300, 280] and body["qc"]


def test_check_name_says_when_it_cannot_infer_a_date(capsys):
    assert main(["check-name", "2024-02-31_TNT_ALebon_Controle_RAW_v01.czi"]) == 1
    out = capsys.readouterr().out
    assert "suggested" not in out and "cannot infer the acquisition date" in out and "2024-02-31" in out
    assert main(["check-name", "--json", "2023-01-15_TNT_ALebon_Controle_RAW_v01"]) == 1
    body = json.loads(capsys.readouterr().out)[0]
    assert body["suggestion"] is None and "no file extension" in body["notes"][0]
