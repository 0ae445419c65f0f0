"""A small ingested facility for the deposit and iRODS tests: synthetic OME-TIFFs, collected and validated."""

from __future__ import annotations

import os
import time
from typing import Any

from microfair.collect import collect, scan
from microfair.ingest import validate_dataset
from microfair.synthetic import textured_stack, write_ome_tiff

DAY = "2024-05-02"


def ingest_synthetic(cfg: Any, ledger: Any, *, n: int = 2, study: str = "Cells",
                     shape: tuple[int, ...] = (2, 2, 48, 64)) -> list[str]:
    """Write ``n`` small OME-TIFFs into the first landing zone, collect and validate them; return their uids."""
    zone = cfg.landing_zones[0].path
    conditions = ["Control", "Treated", "Washout", "Recovery"]
    for i in range(n):
        p = write_ome_tiff(zone / f"DEMO/{study}/e1" / f"{DAY}_DEMO_{study}_ALebon_{conditions[i % 4]}_RAW_v0{i + 1}.ome.tiff",
                           textured_stack(shape, seed=i), channels=["DAPI", "GFP"])
        t = time.time() - 3600
        os.utime(p, (t, t))
    uids = []
    for acq in scan(cfg, ledger).ready:
        collect(cfg, ledger, acq)
        assert validate_dataset(cfg, ledger, acq.uid) == "validated", ledger.require(acq.uid).reason
        uids.append(acq.uid)
    return uids


def synthetic_facility(root: Any, *, n: int = 2) -> tuple[Any, Any, list[str]]:
    """A facility under ``root`` with ``n`` synthetic datasets collected and validated: (cfg, ledger, uids)."""
    from microfair.config import init_local_config, load_config
    from microfair.ledger import Ledger

    cfg = load_config(init_local_config(root))
    for z in cfg.landing_zones:
        z.stability_seconds = 0
    ledger = Ledger.from_config(cfg)
    return cfg, ledger, ingest_synthetic(cfg, ledger, n=n)
