"""``microfair irods …`` (include/microfair/irods/cli.py) against the recording stand-in."""

from __future__ import annotations

import argparse
import json

import pytest

pytest.importorskip("irods")

from microfair.config import init_local_config, load_config  # noqa: E402
from microfair.ingest import convert_dataset, qc_dataset  # noqa: E402
from microfair.irods import cli  # noqa: E402
from microfair.ledger import Ledger  # noqa: E402
from tests.support.synthetic_ingest import ingest_synthetic  # noqa: E402
from microfair.standins.irods import RecordingSession  # noqa: E402


@pytest.fixture
def facility(tmp_path):
    path = init_local_config(tmp_path / "facility")
    cfg = load_config(path)
    for z in cfg.landing_zones:
        z.stability_seconds = 0.0
    ledger = Ledger.from_config(cfg)
    uids = ingest_synthetic(cfg, ledger, n=2)
    convert_dataset(cfg, ledger, uids[0])
    qc_dataset(cfg, ledger, uids[0])
    return path, ledger, uids


def run(config, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="microfair")
    parser.add_argument("--config")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--config", str(config), *argv])
    return args.func(args)


def test_pending_register_status_find(facility, monkeypatch, capsys):
    config, ledger, uids = facility
    zone = RecordingSession(groups=("microfair", "demo"))
    monkeypatch.setattr(cli, "open_session", lambda env_file=None: zone)
    assert run(config, "irods", "pending") == 0
    assert capsys.readouterr().out.split() == [uids[0]]  # the other one is not past QC

    assert run(config, "irods", "register", "--pending") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{uids[0]}: /tempZone/home/demo/") and "written, 0 unchanged" in out
    assert ("session", "cleanup", "") in zone.calls

    assert run(config, "irods", "register", uids[1]) == 1  # not past QC: reported, exit status 1
    assert "past QC" in capsys.readouterr().err

    assert run(config, "irods", "status", "--json", *uids) == 0
    rows = {r["uid"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[uids[0]]["stage"] == "succeeded" and rows[uids[0]]["record"]["data_object"] in zone.objs
    assert rows[uids[1]]["stage"] == "failed" and "past QC" in rows[uids[1]]["error"]

    assert run(config, "irods", "find", uids[0]) == 0
    assert rows[uids[0]]["record"]["data_object"] in capsys.readouterr().out.split()
    assert run(config, "irods", "find", "nothing-like-it") == 1


def test_register_needs_an_environment_file(facility, tmp_path, monkeypatch):
    from microfair.cli import UserError

    config, _, uids = facility
    monkeypatch.delenv("IRODS_ENVIRONMENT_FILE", raising=False)
    with pytest.raises(UserError, match="no iRODS environment file"):
        run(config, "irods", "register", uids[0], "--env-file", str(tmp_path / "missing.json"))
