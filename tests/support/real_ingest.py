"""A few small synthetic acquisitions taken through the real ingest functions (no Airflow).

``microfair.collect.scan/collect`` then ``microfair.ingest.validate_dataset/convert_dataset/qc_dataset``,
exactly what the DAG tasks call, so the ledger, the reports folder and the QC records have
the shapes a facility's ledger has. Used by the dashboard's unit tests and its browser test.

The acquisitions (first landing zone):

* ``good``: a well-named two-channel OME-TIFF with a REMBI sidecar: reaches QC;
* ``misnamed``: a file whose name breaks the convention: validated with a naming flag, reaches QC;
* ``empty``: a 0-byte file: quarantined at collect;
* ``corrupt``: random bytes with a ``.czi`` name: quarantined at validate.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from microfair.collect import collect, scan
from microfair.config import FacilityConfig
from microfair.ingest import convert_dataset, qc_dataset, validate_dataset
from microfair.ledger import Ledger, RunContext
from microfair.synthetic import textured_stack, write_ome_tiff

DAY = "2024-05-02"
DAG_ID = "microfair_ingest"
GOOD = f"{DAY}_DEMO_Cells_ALebon_Control_RAW_v01.ome.tiff"
MISNAMED = "mon essai été.ome.tiff"
EMPTY = f"{DAY}_DEMO_Cells_ALebon_Empty_RAW_v01.czi"
CORRUPT = f"{DAY}_DEMO_Cells_ALebon_Noise_RAW_v01.czi"


@dataclass
class Ingested:
    """What :func:`ingest_samples` left: dataset uids by sample key, and each landing-zone file."""

    uids: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    run_id: str = "manual__real_ingest"


def _age(p: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    os.utime(p, (t, t))


def write_samples(cfg: FacilityConfig) -> dict[str, Path]:
    """The four acquisitions in the first landing zone, an hour old (stable)."""
    zone = cfg.landing_zones[0].path
    files = {
        "good": write_ome_tiff(zone / "DEMO/Cells/e1" / GOOD, textured_stack((2, 3, 96, 128)),
                               channels=["DAPI", "GFP"]),
        "misnamed": write_ome_tiff(zone / MISNAMED, textured_stack((1, 1, 64, 64), seed=5)),
    }
    sidecar = files["good"].with_name(files["good"].name + ".meta.yaml")
    sidecar.write_text("study:\n  title: Cell shape under stress in cultured HeLa cells\n"
                       "biosample:\n  organism: Homo sapiens\n")
    bad = zone / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / EMPTY).write_bytes(b"")
    (bad / CORRUPT).write_bytes(os.urandom(50_000))
    files.update(empty=bad / EMPTY, corrupt=bad / CORRUPT)
    for p in (*files.values(), sidecar):
        _age(p)
    return files


def ingest(cfg: FacilityConfig, ledger: Ledger, *, run_id: str = "manual__real_ingest",
           dag_id: str = DAG_ID) -> dict[str, str]:
    """One discover → collect → validate → convert → QC pass over what the landing zones hold.

    Returns the final state by dataset uid. Every event carries a task instance of ``dag_id``
    (map index = position in the scan), as the mapped DAG tasks record them.
    """
    out: dict[str, str] = {}
    for i, acq in enumerate(scan(cfg, ledger).ready):
        def ctx(task: str) -> RunContext:
            return RunContext(dag_id, run_id, f"ingest_acquisition.{task}", i)

        state = collect(cfg, ledger, acq, ctx("collect"))
        if state == "collected":
            state = validate_dataset(cfg, ledger, acq.uid, ctx("validate"))
        if state == "validated":
            state = convert_dataset(cfg, ledger, acq.uid, ctx("convert"))
        if state == "converted":
            state = qc_dataset(cfg, ledger, acq.uid, ctx("qc"))
        out[acq.uid] = state
    return out


def ingest_samples(cfg: FacilityConfig, ledger: Ledger, *, run_id: str = "manual__real_ingest") -> Ingested:
    """Write the four acquisitions and ingest them in one pass.

    The files are complete (written an hour "ago"), so the zones of ``cfg`` are set to need one look
    only (``stability_seconds = 0``): this object's zones are changed, not the facility file.
    """
    for zone in cfg.landing_zones:
        zone.stability_seconds = 0.0
    files = write_samples(cfg)
    states = ingest(cfg, ledger, run_id=run_id)
    by_source = {d.source_path: d.uid for d in ledger.datasets()}
    uids = {k: by_source[str(p)] for k, p in files.items()}
    return Ingested(uids, files, {k: states[u] for k, u in uids.items()}, run_id)
