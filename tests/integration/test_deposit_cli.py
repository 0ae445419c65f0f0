"""``microfair deposit validate|run --target …``: every problem listed for the chosen repository; a run
against the Zenodo stand-in with the connection from the environment, then a no-op re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from microfair.cli import main
from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger
from microfair.standins.zenodo import ZenodoStandin
from tests.support.synthetic_ingest import ingest_synthetic

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"
TOKEN = "cli-zenodo-token-never-printed"


def test_validate_and_run_per_target(tmp_path, capsys, monkeypatch):
    config = init_local_config(tmp_path / "facility")
    cfg = load_config(config)
    for z in cfg.landing_zones:
        z.stability_seconds = 0
    ingest_synthetic(cfg, Ledger.from_config(cfg), n=2)
    data = yaml.safe_load(EXAMPLE.read_text())
    del data["subject"], data["license"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    base = ["--config", str(config), "deposit"]
    assert main([*base, "validate", str(bad), "--project", "DEMO", "--target", "dataverse", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["target"] == "dataverse" and {p["path"] for p in out["problems"]} == {"subject", "license"}
    assert main([*base, "validate", str(bad), "--project", "DEMO", "--target", "zenodo", "--json"]) == 1
    assert {p["path"] for p in json.loads(capsys.readouterr().out)["problems"]} == {"license"}  # no subject there
    assert main([*base, "validate", str(EXAMPLE), "--project", "DEMO", "--target", "zenodo"]) == 0
    assert "ready for zenodo" in capsys.readouterr().out
    with ZenodoStandin({TOKEN: "me"}) as zs:
        monkeypatch.setenv("AIRFLOW_CONN_ZENODO_DEFAULT", json.dumps({"host": zs.url, "password": TOKEN}))
        assert main([*base, "run", str(EXAMPLE), "--project", "DEMO", "--target", "zenodo"]) == 0
        first = capsys.readouterr().out
        assert first.startswith(f"zenodo: published: {zs.doi(zs.published()[0])} ")
        assert main([*base, "run", str(EXAMPLE), "--project", "DEMO", "--target", "zenodo"]) == 0
        again = capsys.readouterr()
        assert again.out.startswith(f"zenodo: unchanged: {zs.doi(zs.published()[0])}") and len(zs.published()) == 1
        assert TOKEN not in first + again.out + again.err
    # the BioImage Archive through the same command: its own asynchronous path, run through
    from microfair.standins.biostudies import BiostudiesStandin

    with BiostudiesStandin(tmp_path / "bs", {"me@example.org": TOKEN}) as bs:
        monkeypatch.setenv("AIRFLOW_CONN_BIOSTUDIES_DEFAULT", json.dumps({
            "host": bs.url, "login": "me@example.org", "password": TOKEN}))
        monkeypatch.setenv("MICROFAIR_BIOSTUDIES_POLL_SECONDS", "0")
        assert main([*base, "run", str(EXAMPLE), "--project", "DEMO", "--target", "bia"]) == 0
        out = capsys.readouterr().out
        accno = next(iter(bs.submissions))
        assert out.startswith(f"bia: published: 10.6019/{accno} https://www.ebi.ac.uk/biostudies/bioimages/studies/")
        led = Ledger.from_config(cfg)
        pubs = led.get_record(led.datasets()[0].uid, "publications")
        assert pubs["bia"]["id"] == accno and pubs["zenodo"]["state"] == "published"
        assert TOKEN not in out
