"""Who runs a stage event: host, process id and process start time, and whether that process still lives.

A stage event is ``running`` from ``start_event`` until ``finish_event``. A process killed in between
(SIGKILL, OOM killer, a lost worker node) never finishes it; the owner recorded at the start lets the
ledger tell such an orphan (its process is gone) from a long conversion that is still working.
The start time guards against a recycled process id. Liveness is only knowable on the same host;
an owner on another host is "unknown" (``None``).
"""

from __future__ import annotations

import os
import socket
from typing import Any


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing ')'
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def current_owner() -> dict[str, Any]:
    """This process, as recorded in a running event's ``details["owner"]``."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_ticks(pid)}


def owner_alive(owner: dict[str, Any] | None) -> bool | None:
    """True/False when the owner is on this host (does that process still exist?); None when unknowable."""
    if not owner or owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return None
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    start = owner.get("start")
    if start is not None:
        now = _start_ticks(pid)
        if now is not None and now != start:
            return False  # the pid was recycled by a newer process
    return True
