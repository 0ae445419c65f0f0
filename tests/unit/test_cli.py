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
