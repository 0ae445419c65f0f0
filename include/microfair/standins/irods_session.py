"""The ``standin`` iRODS session factory: the recording stand-in, with its zone kept in a file.

The recording stand-in (:mod:`microfair.standins.irods`) lives in memory. For a DAG run, whose tasks
run in separate processes, the zone is pickled to a state file when a session is cleaned up and loaded
by the next session. The file is the connection extra ``standin_state``, else
``$MICROFAIR_IRODS_STANDIN_STATE``.

Registered in pyproject.toml as the entry point ``standin`` of the group ``microfair.irods_sessions``;
an iRODS connection selects it with the extra ``"session_factory": "standin"``. For demos and tests only.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from microfair.standins.irods import RecordingSession

STATE_VAR = "MICROFAIR_IRODS_STANDIN_STATE"


class PersistentSession(RecordingSession):
    """A recording session that writes its zone to ``state`` on ``cleanup()``."""

    def __init__(self, state: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state

    def cleanup(self) -> None:
        super().cleanup()
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_name(self.state.name + ".partial")
        tmp.write_bytes(pickle.dumps({"colls": self.colls, "objs": self.objs, "calls": self.calls}))
        tmp.replace(self.state)


def state_path(conn: Any = None) -> Path:
    """The state file named by the connection extra ``standin_state`` or by ``$MICROFAIR_IRODS_STANDIN_STATE``."""
    extra = (conn.extra_dejson or {}) if conn is not None else {}
    value = extra.get("standin_state") or os.environ.get(STATE_VAR)
    if not value:
        raise ValueError(f"the iRODS stand-in needs a state file: set the connection extra 'standin_state' "
                         f"or ${STATE_VAR}")
    return Path(value)


def load(path: Path, conn: Any = None) -> PersistentSession:
    """A session over the zone saved in ``path`` (an empty zone when the file does not exist yet)."""
    # The zone as the real hook reads it: extra "zone", else the schema ("Zone" in the connection form).
    zone = ((conn.extra_dejson or {}).get("zone") or conn.schema or "tempZone") if conn is not None else "tempZone"
    session = PersistentSession(path, zone=zone, user=conn.login if conn is not None else "rods",
                                groups=("microfair", "demo"))
    if path.exists():
        state = pickle.loads(path.read_bytes())
        session.colls, session.objs, session.calls = state["colls"], state["objs"], state["calls"]
    return session


def factory(conn: Any) -> PersistentSession:
    """Entry point ``microfair.irods_sessions:standin``: a session for the Airflow connection ``conn``."""
    return load(state_path(conn), conn)
