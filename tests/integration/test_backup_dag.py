"""dag.test() runs of microfair_backup and microfair_retention on a seeded facility (own AIRFLOW_HOME)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_backup_support import seed_dataset  # noqa: E402

from microfair.airflow_env import REPO, airflow_env  # noqa: E402
from microfair.config import init_local_config, load_config  # noqa: E402
from microfair.ledger import Ledger  # noqa: E402
from tests.support.airflow_db import migrated_db  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.dag, pytest.mark.slow]


def _run_dag(dag_id: str, home: Path, config: Path) -> dict:
    env = airflow_env(home, config, extra={"MICROFAIR_TASK_RETRIES": "0"})
    proc = subprocess.run([sys.executable, str(REPO / "tests/dags/run_dag.py"), dag_id], env=env,
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT "):])
            out["log"] = proc.stdout + proc.stderr
            return out
    raise AssertionError(f"{dag_id}: no result (exit {proc.returncode}):\n" + (proc.stdout + proc.stderr)[-4000:])


def test_backup_dag_one_task_per_target_and_a_failing_target_blocks_nobody(tmp_path):
    config = init_local_config(tmp_path / "facility")
    data = yaml.safe_load(config.read_text())
    broken = tmp_path / "not-a-folder"
    broken.write_text("a file where a repository should be\n")
    data["backup"]["targets"].append({"name": "tape", "medium": "tape", "offsite": False,
                                      "repository": str(broken / "repo"),
                                      "password_file": data["backup"]["targets"][0]["password_file"]})
    config.write_text(yaml.safe_dump(data))
    cfg = load_config(config)
    ledger = Ledger.from_config(cfg)
    uids = [seed_dataset(cfg, ledger, f"S{i}", age_days=90) for i in range(2)]
    home = tmp_path / "airflow"
    migrated_db(home)

    result = _run_dag("microfair_backup", home, config)
    states = {(t["task_id"], t["map_index"]): t["state"] for t in result["tasks"]}
    assert states[("backup_target", 0)] == "success", result["log"][-3000:]
    assert states[("backup_target", 1)] == "success"
    assert states[("backup_target", 2)] == "failed"  # tape
    assert states[("evaluate", -1)] == "success"
    for uid in uids:
        verdict = ledger.get_record(uid, "backup_verdict")
        assert verdict["compliant"] and verdict["copies"] == 3, verdict
        assert not ledger.get_record(uid, "backup:tape")
    failed = [e for e in ledger.events(stage="backup") if e.dataset_id is None and e.state == "failed"]
    assert [e.details["target"] for e in failed] == ["tape"]

    result = _run_dag("microfair_retention", home, config)
    assert {t["task_id"]: t["state"] for t in result["tasks"]} == {"free_landing_zones": "success"}
    assert "would free" in result["log"]
    for uid in uids:
        assert Path(ledger.require(uid).source_path).exists()  # dry-run by default
