"""``make demo``: the Dataverse and Zenodo stand-ins beside the BIA one, and the identifiers it shows.

The stand-ins (:mod:`microfair.standins.dataverse`, :mod:`microfair.standins.zenodo`) run on 127.0.0.1
for the length of the deposit; the tokens are made for this run only and handed to Airflow as
connections in the environment. Nothing leaves the machine; the DOIs they hand out are test DOIs.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

from microfair.deposit.targets import TARGETS

DEMO_COLLECTION = "demo-facility"


@contextlib.contextmanager
def repository_standins() -> Iterator[dict[str, str]]:
    """Start both stand-ins; yield the environment (``AIRFLOW_CONN_DATAVERSE_DEFAULT``, ``…ZENODO_DEFAULT``)."""
    from microfair.standins.dataverse import DataverseStandin
    from microfair.standins.zenodo import ZenodoStandin

    dv_token, z_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with DataverseStandin({dv_token: "demo"}, collections={DEMO_COLLECTION: {"demo"}}) as dv, \
            ZenodoStandin({z_token: "demo"}) as zs:
        yield {
            "AIRFLOW_CONN_DATAVERSE_DEFAULT": json.dumps({"conn_type": "dataverse", "host": dv.url,
                                                         "password": dv_token, "extra": {"collection": DEMO_COLLECTION}}),
            "AIRFLOW_CONN_ZENODO_DEFAULT": json.dumps({"conn_type": "zenodo", "host": zs.url, "password": z_token}),
        }


def repository_confs(conf: dict[str, Any]) -> list[dict[str, Any]]:
    """The deposit DAG's params for the other targets, from the BIA run's."""
    return [{**conf, "target": t} for t in ("dataverse", "zenodo")]


def published_lines(ledger: Any) -> list[str]:
    """One line per repository and identifier the ledger records (the three identifiers of the demo)."""
    seen: dict[tuple[str, str], str] = {}
    for ds in ledger.datasets():
        for target, p in (ledger.get_record(ds.uid, "publications") or {}).items():
            if isinstance(p, dict) and p.get("pid") and target != "bia":
                seen[(target, p["pid"])] = f"{TARGETS[target].title} (stand-in): {p['pid']} ({p.get('state')})" \
                                           f", {p.get('landing_page')}"
    return [seen[k] for k in sorted(seen)]
