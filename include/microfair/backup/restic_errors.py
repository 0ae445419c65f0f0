"""The errors of the restic client, and how a failed restic command is classified.

restic reports failures as text on stderr; :func:`failure` is the one place that reads it
and turns it into a typed error (unreachable, disk full, full backup cache, damaged
content, wrong password). Callers branch on the type, never on the message.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any


class ResticError(RuntimeError):
    """restic failed; ``reason`` is a one-line explanation a facility manager can act on."""

    def __init__(self, reason: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.returncode = returncode
        self.stderr = stderr


class DiskFullError(ResticError):
    """The target ran out of space: nothing written in this run counts as a copy."""


class RepositoryUnreachable(ResticError):
    """The repository could not be opened (server down, wrong key, wrong path)."""


class CacheFullError(ResticError):
    """The local backup cache (restic's cache and temporary packs) is full; retry once space is freed."""


class ResticNotInstalled(ResticError):
    """The restic executable is not on this machine."""


class DamagedContent(ResticError):
    """restic could not read stored content back (MAC or hash mismatch); ``blobs`` names what failed."""

    def __init__(self, reason: str, *, blobs: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(reason, **kw)
        self.blobs = blobs


DAMAGE_MARKERS = ("ciphertext verification failed", "decrypting blob", "hash does not match",
                  "pack id does not match", "unexpected eof")
BLOB_FAILED = re.compile(r"blob ([0-9a-f]{64})")


def failure(client: Any, verb: str, rc: int | None, stderr: str) -> ResticError:
    """Turn a failed restic command into the error a facility manager can act on (``client``: a Restic)."""
    stderr = client.scrub(stderr)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    msgs: list[str] = []
    for ln in lines:
        if ln.startswith("{"):
            try:
                obj = json.loads(ln)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                err = obj.get("error")
                ln = (err.get("message") if isinstance(err, dict) else err) or obj.get("message") or ln
                if obj.get("item"):
                    ln = f"{obj['item']}: {ln}"
        msgs.append(str(ln))
    fatal = [m for m in msgs if m.startswith("Fatal:")] or msgs[-3:] or [f"exit status {rc}"]
    text = " | ".join(dict.fromkeys(fatal))
    low = stderr.lower()
    full_lines = [ln for ln in lines if "no space left on device" in ln.lower() or "disk quota" in ln.lower()]
    repo_paths = [client.repository, os.path.realpath(client.repository)] if client.repository_is_local() else []
    on_repo = any(p.rstrip(os.sep) + os.sep in ln for ln in full_lines for p in repo_paths)
    local_roots = [p for p in (client.cache_dir, client.temp_dir) if p]
    local = not on_repo and any("restic-temp-pack" in ln or any(r.rstrip(os.sep) + os.sep in ln
                                                               for r in local_roots) for ln in full_lines)
    if local:
        removed = client.remove_partials()
        where = client.cache_dir or os.environ.get("TMPDIR") or "/tmp"
        return CacheFullError(f"target {client.label}: the local backup cache {where} is full (no space left on "
                              f"device while {verb}; {len(removed)} partial file(s) removed): free space there "
                              "or point backup.cache_dir at a larger volume, then retry",
                              returncode=rc, stderr=stderr)
    if full_lines:
        return DiskFullError(f"target {client.label}: disk full on the repository ({verb} failed: {text})",
                             returncode=rc, stderr=stderr)
    if any(s in low for s in ("unable to open repository", "unable to open config file",
                              "connection refused", "ssh command exited", "no route to host",
                              "host key verification failed", "permission denied (publickey")):
        ssh_lines = [m for m in msgs if not m.startswith("Fatal:")][-2:]
        detail = " | ".join(dict.fromkeys(ssh_lines + fatal))
        return RepositoryUnreachable(f"target {client.label}: repository {client.repository} unreachable ({detail})",
                                     returncode=rc, stderr=stderr)
    if "wrong password" in low:
        return ResticError(f"target {client.label}: wrong repository password", returncode=rc, stderr=stderr)
    if any(m in low for m in DAMAGE_MARKERS):
        blobs = tuple(dict.fromkeys(BLOB_FAILED.findall(stderr)))
        return DamagedContent(f"target {client.label}: damaged content in the repository ({verb}: {text})",
                              blobs=blobs, returncode=rc, stderr=stderr)
    return ResticError(f"target {client.label}: restic {verb} failed: {text}", returncode=rc, stderr=stderr)
