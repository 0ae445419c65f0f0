"""microfair ingest: one discover → collect → validate → convert → QC pass from a shell, with the DAG's functions."""

from __future__ import annotations

import json

import yaml

from microfair import ingest
from microfair.cli import main
from microfair.config import load_config
from microfair.ingest_pass import run_pass
from microfair.ledger import Ledger
from microfair.synthetic import textured_stack, write_ome_tiff

GOOD = ("2024-03-01_TNT_ALebon_Ctrl_RAW_v01.ome.tiff", "2024-03-01_TNT_ALebon_Treated_RAW_v01.ome.tiff")
EMPTY = "2024-03-01_TNT_ALebon_Empty_RAW_v01.ome.tiff"


def _drop(zone, seed0=1):
    for i, name in enumerate(GOOD):
        write_ome_tiff(zone / name, textured_stack((1, 2, 48, 40), seed=seed0 + i))
    (zone / EMPTY).write_bytes(b"")


def test_one_pass_from_the_shell(tmp_path, capsys):
    assert main(["config", "init", str(tmp_path / "facility")]) == 0
    cfg_file = tmp_path / "facility" / "microfair.yaml"
    body = yaml.safe_load(cfg_file.read_text())
    for z in body["landing_zones"]:
        z["stability_seconds"] = 0.0
    cfg_file.write_text(yaml.safe_dump(body))
    cfg = load_config(cfg_file)
    _drop(cfg.landing_zones[0].path)
    capsys.readouterr()

    assert main(["--config", str(cfg_file), "ingest"]) == 1  # the empty file is quarantined
    out = capsys.readouterr().out.splitlines()
    per_file = {line.split()[1]: line for line in out if line.startswith(("ok ", "QUAR", "FAIL"))}
    assert set(per_file) == {*GOOD, EMPTY}, out
    assert all(per_file[n].startswith("ok ") and "qc_done" in per_file[n] for n in GOOD)
    assert per_file[EMPTY].startswith("QUAR") and "empty file" in "\n".join(out)
    assert out[-1].startswith("ingest pass cli__") and "2 qc_done, 1 quarantined" in out[-1]

    ledger = Ledger.from_config(cfg)
    by_name = {ds.name: ds for ds in ledger.datasets()}
    assert {n: by_name[n].state for n in (*GOOD, EMPTY)} == {GOOD[0]: "qc_done", GOOD[1]: "qc_done",
                                                            EMPTY: "quarantined"}
    for n in GOOD:
        ds = by_name[n]
        assert (ingest.report_dir(cfg, ds) / "qc.json").is_file() and ingest.zarr_path(cfg, ds).is_dir()
        states = {stage: st.state for stage, st in ledger.stage_states(ds.uid).items()}
        assert states["convert"] == "succeeded" and states["qc"] in ("succeeded", "flagged")
        assert ledger.events(ds.uid, "convert")[-1].run_id.startswith("cli__")

    assert main(["--config", str(cfg_file), "ingest", "--json"]) == 0  # nothing new: nothing to do
    again = json.loads(capsys.readouterr().out)
    assert again["ok"] is True and again["acquisitions"] == []
    assert main(["--config", str(cfg_file), "ingest", "--zone", "no-such-scope"]) == 1
    assert "no landing zone 'no-such-scope'" in capsys.readouterr().err


def test_a_failing_stage_does_not_stop_the_others_and_is_recorded(facility_config, ledger, monkeypatch):
    _drop(facility_config.landing_zones[0].path, seed0=5)
    real_convert = ingest.convert_dataset
    victim: list[str] = []

    def convert(cfg, led, uid, ctx=None, **kw):
        if not victim:  # the first acquisition converted fails before the stage records anything
            victim.append(uid)
            raise RuntimeError("disk unplugged")
        return real_convert(cfg, led, uid, ctx, **kw)

    monkeypatch.setattr(ingest, "convert_dataset", convert)
    result = run_pass(facility_config, ledger)
    states = sorted(a.state for a in result.acquisitions)
    assert states == ["failed", "qc_done", "quarantined"] and not result.ok
    failed = next(a for a in result.acquisitions if a.state == "failed")
    assert failed.uid == victim[0] and failed.stage == "convert" and failed.error == "RuntimeError: disk unplugged"
    status = ledger.stage_states(failed.uid)["convert"]
    assert status.state == "failed" and "disk unplugged" in status.error  # visible to status and the dashboard
    assert ledger.require(failed.uid).state == "validated"


def test_a_missing_landing_zone_fails_the_pass(facility_config, ledger, tmp_path):
    facility_config.landing_zones[0].path = tmp_path / "unmounted"
    result = run_pass(facility_config, ledger)
    assert not result.ok and result.missing_zones and result.acquisitions == []
