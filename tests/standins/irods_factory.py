"""A session factory for ``MICROFAIR_IRODS_SESSION_FACTORY`` in DAG tests: one persistent stand-in zone.

The recording stand-in lives in memory, so for a DAG run (tasks in separate processes) the zone is
pickled to ``$MICROFAIR_IRODS_STANDIN_STATE`` after each task and loaded by the next.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from tests.standins.irods import RecordingSession


class PersistentSession(RecordingSession):
    def cleanup(self) -> None:
        super().cleanup()
        state = Path(os.environ["MICROFAIR_IRODS_STANDIN_STATE"])
        state.write_bytes(pickle.dumps({"colls": self.colls, "objs": self.objs, "calls": self.calls}))


def load(path: Path, conn: Any = None) -> PersistentSession:
    session = PersistentSession(zone=(conn.extra_dejson or {}).get("zone", "tempZone") if conn else "tempZone",
                                user=conn.login if conn else "rods", groups=("microfair", "demo"))
    if path.exists():
        state = pickle.loads(path.read_bytes())
        session.colls, session.objs, session.calls = state["colls"], state["objs"], state["calls"]
    return session


def factory(conn: Any) -> PersistentSession:
    return load(Path(os.environ["MICROFAIR_IRODS_STANDIN_STATE"]), conn)
