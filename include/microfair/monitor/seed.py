"""A synthetic ledger for the dashboard's tests, benchmark and screenshots.

Writes datasets, files, stage events, stage statuses and records straight into the
ledger tables in bulk (10,000 datasets and 100,000 events take a few seconds), with
the shapes the stages write: Dublin Core, REMBI, QC with per-channel metrics and
flags, and 3-2-1 verdicts with reasons.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, insert, select

from microfair.ledger import Dataset, DatasetFile, Ledger, Record, StageEvent, StageStatus

PROJECTS = ("DEMO", "NEURO", "CELLDIV", "ORGANOID")
PIPELINE = ("collect", "validate", "convert", "qc")


@dataclass
class SeedResult:
    datasets: int
    events: int
    failed: int
    backlog: int


def qc_record(rng: random.Random, channels: tuple[str, ...] = ("DAPI", "GFP"),
              thumbnails: dict[str, str] | None = None) -> dict[str, Any]:
    chans = []
    for i, name in enumerate(channels):
        sat = round(rng.uniform(0, 0.03), 4)
        snr = round(rng.uniform(1.5, 30), 2)
        flags = ([f"saturation {sat:.1%} > 1.0%"] if sat > 0.01 else []) + ([f"SNR {snr} < 3"] if snr < 3 else [])
        chans.append({"name": name, "index": i, "metrics": {"saturated_fraction": sat, "snr": snr,
                                                             "focus": round(rng.uniform(0.1, 1), 3),
                                                             "dynamic_range_fraction": round(rng.uniform(0.02, 0.9), 3)},
                      "flags": flags, "thumbnail": (thumbnails or {}).get(name)})
    return {"channels": chans, "flags": sorted({f for c in chans for f in c["flags"]}),
            "passed": not any(c["flags"] for c in chans)}


def verdict_record(uid: str, name: str, project: str, size: int, compliant: bool) -> dict[str, Any]:
    reasons = [] if compliant else ["target offsite: not backed up yet", "2 verified copies, 3 required",
                                    "0 off-site copies, 1 required"]
    return {"uid": uid, "name": name, "project": project, "compliant": compliant, "copies": 3 if compliant else 2,
            "media": ["disk", "remote-server"] if compliant else ["disk"], "offsite_copies": 1 if compliant else 0,
            "reasons": reasons, "evaluated_at": datetime.now(timezone.utc).isoformat(), "size_bytes": size,
            "locations": [{"location": "primary", "medium": "disk", "offsite": False, "verified": True,
                           "detail": "raw tree"}]}


def seed_ledger(ledger: Ledger, microscopes: list[str], *, n_datasets: int = 200, events_target: int | None = None,
                seed: int = 7, now: datetime | None = None, days: int = 60, failed_fraction: float = 0.02,
                backlog_fraction: float = 0.02, with_backup: bool = True, dag_id: str = "microfair_ingest",
                uid_prefix: str = "SEED") -> SeedResult:
    """Append ``n_datasets`` synthetic datasets (and about ``events_target`` events) to the ledger."""
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc)
    events_target = events_target or n_datasets * 10
    with ledger.session() as s:
        next_ds = (s.scalar(select(func.max(Dataset.id))) or 0) + 1
        next_ev = (s.scalar(select(func.max(StageEvent.id))) or 0) + 1
    datasets, files, events, statuses, records = [], [], [], [], []
    n_failed = n_backlog = 0
    # Events a dataset leaves on its own (backlog: none; failed: half the pipeline on average); the rest
    # of the target are earlier failed attempts, spread over the datasets that went through a stage.
    ok_fraction = max(0.0, 1 - backlog_fraction - failed_fraction)
    base = ok_fraction * (len(PIPELINE) + (1 if with_backup else 0)) + failed_fraction * (len(PIPELINE) + 1) / 2
    per_ds_extra = max(0.0, (events_target / max(1, n_datasets) - base) / max(1e-9, 1 - backlog_fraction))
    for i in range(n_datasets):
        ds_id = next_ds + i
        uid = f"{uid_prefix}{ds_id:07d}"
        scope = microscopes[i % len(microscopes)]
        project = PROJECTS[i % len(PROJECTS)]
        created = now - timedelta(seconds=rng.uniform(0, days * 86400))
        size = int(rng.lognormvariate(20, 1.2))
        name = f"{created:%Y-%m-%d}_{project}_Study{i % 13}_User{i % 7}_Cond{i % 5}_RAW_v01.czi"
        r = rng.random()
        state, n_stages, fail_stage = "qc_done", len(PIPELINE), None
        if r < backlog_fraction:
            state, n_stages = "discovered", 0
            n_backlog += 1
        elif r < backlog_fraction + failed_fraction:
            fail_stage = PIPELINE[rng.randrange(len(PIPELINE))]
            n_stages = PIPELINE.index(fail_stage) + 1
            state = "failed"
            n_failed += 1
        collected = created + timedelta(minutes=5) if n_stages else None
        datasets.append({"id": ds_id, "uid": uid, "microscope": scope, "source_path": f"/landing/{scope}/{name}",
                         "name": name, "project": project, "study": f"Study{i % 13}", "experiment": f"{created:%Y-%m-%d}",
                         "raw_path": f"/storage/raw/{project}/{name}" if collected else None,
                         "zarr_path": f"/storage/converted/{project}/{name}.ome.zarr" if n_stages >= 3 and not fail_stage else None,
                         "size_bytes": size, "source_mtime_ns": int(created.timestamp() * 1e9),
                         "sha256": f"{rng.getrandbits(256):064x}" if collected else None,
                         "state": state, "reason": None, "name_valid": True, "created_at": created, "updated_at": created,
                         "collected_at": collected})
        if collected:
            files.append({"dataset_id": ds_id, "role": "raw", "path": datasets[-1]["raw_path"], "size_bytes": size,
                          "sha256": datasets[-1]["sha256"], "created_at": collected})
        t = created
        run_id = f"scheduled__{created:%Y-%m-%dT%H}:00:00+00:00"
        # Earlier failed attempts (retries), spread over the stages this dataset went through.
        extra = int(per_ds_extra) + (1 if rng.random() < per_ds_extra % 1 else 0) if n_stages else 0
        retries = [extra // n_stages + (1 if k < extra % n_stages else 0) for k in range(n_stages)]
        for k, stage in enumerate(PIPELINE[:n_stages]):
            for attempt in range(1, retries[k] + 1):
                t += timedelta(seconds=rng.uniform(5, 60))
                events.append(_event(next_ev, ds_id, stage, "failed", t, attempt, dag_id, run_id, i,
                                     error="OSError: [Errno 5] Input/output error (retried)"))
                next_ev += 1
            t += timedelta(seconds=rng.uniform(5, 120))
            failing = stage == fail_stage
            ev = _event(next_ev, ds_id, stage, "failed" if failing else "succeeded", t, 1, dag_id, run_id, i,
                        error=(f"UnreadableImage: {uid}.czi: damaged — truncated or corrupt CZI file"
                               if failing else None),
                        nbytes=size if stage == "collect" else None)
            events.append(ev)
            statuses.append({"dataset_id": ds_id, "stage": stage, "state": ev["state"], "event_id": next_ev,
                             "error": ev["error"], "updated_at": ev["ended_at"]})
            next_ev += 1
            if failing:
                break
        if n_stages == len(PIPELINE) and not fail_stage:
            records.append({"dataset_id": ds_id, "kind": "dublin_core", "updated_at": t,
                            "body": {"title": name, "creator": [f"User{i % 7}"], "date": f"{created:%Y-%m-%d}",
                                     "format": "image/czi", "rights": "CC-BY-4.0", "identifier": uid}})
            records.append({"dataset_id": ds_id, "kind": "qc", "updated_at": t, "body": qc_record(rng)})
            if with_backup:
                compliant = rng.random() > 0.1
                t += timedelta(hours=rng.uniform(1, 24))
                ev = _event(next_ev, ds_id, "backup", "succeeded" if compliant else "flagged", t, 1,
                            "microfair_backup", f"scheduled__{t:%Y-%m-%d}T02:00:00+00:00", None,
                            error=None if compliant else "2 verified copies, 3 required",
                            details={"compliant": compliant, "copies": 3 if compliant else 2})
                events.append(ev)
                statuses.append({"dataset_id": ds_id, "stage": "backup", "state": ev["state"], "event_id": next_ev,
                                 "error": ev["error"], "updated_at": ev["ended_at"]})
                next_ev += 1
                records.append({"dataset_id": ds_id, "kind": "backup_verdict", "updated_at": t,
                                "body": verdict_record(uid, name, project, size, compliant)})
    with ledger.session() as s:
        for model, rows in ((Dataset, datasets), (DatasetFile, files), (StageEvent, events),
                            (StageStatus, statuses), (Record, records)):
            for j in range(0, len(rows), 5000):
                s.execute(insert(model), rows[j:j + 5000])
    return SeedResult(len(datasets), len(events), n_failed, n_backlog)


def _event(ev_id: int, ds_id: int, stage: str, state: str, t: datetime, attempt: int, dag_id: str, run_id: str,
           map_index: int | None, *, error: str | None = None, nbytes: int | None = None,
           details: dict[str, Any] | None = None) -> dict[str, Any]:
    task = {"collect": "collect", "validate": "validate", "convert": "convert", "qc": "qc"}.get(stage, "evaluate")
    return {"id": ev_id, "dataset_id": ds_id, "stage": stage, "state": state, "attempt": attempt, "bytes": nbytes,
            "checksum": None, "started_at": t, "ended_at": t + timedelta(seconds=3), "error": error,
            "details": details, "dag_id": dag_id, "run_id": run_id, "task_id": task, "map_index": map_index}
