"""A thin, typed client for the ``restic`` command: runs it with ``--json`` and parses what it prints.

Secrets never reach process arguments: the repository password goes to restic through
``RESTIC_PASSWORD_FILE`` (a secrets file) or ``RESTIC_PASSWORD`` (from an Airflow
connection) in the child's environment only, and every message built from restic's
output is scrubbed of the password before it is logged or raised.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from microfair.backup.restic_errors import (  # noqa: F401  (re-exported: the client's errors)
    CacheFullError,
    DamagedContent,
    DiskFullError,
    RepositoryUnreachable,
    ResticError,
    ResticNotInstalled,
    failure,
)

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
_PACK_OF = re.compile(r"belongs to pack ([0-9a-f]{64})")


@dataclass(repr=False)
class ResticCredentials:
    """What restic needs to open a repository. ``password`` is never printed (see ``__repr__``)."""

    password: str | None = None
    password_file: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for s3:
    ssh_identity_file: str | None = None
    ssh_known_hosts_file: str | None = None
    ssh_port: int | None = None
    ssh_connect_timeout: int = 15

    def __repr__(self) -> str:
        return (f"ResticCredentials(password={'***' if self.password else None}, "
                f"password_file={self.password_file!r}, env_keys={sorted(self.env)}, "
                f"ssh_identity_file={self.ssh_identity_file!r}, ssh_port={self.ssh_port})")

    def secrets(self) -> list[str]:
        return [s for s in [self.password, *self.env.values()] if s and len(s) >= 4]


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int
    total_files_processed: int
    total_bytes_processed: int
    total_duration: float
    warnings: tuple[str, ...] = ()

    @property
    def dedup_ratio(self) -> float:
        """Bytes read from the sources per byte added to the repository in this run."""
        return round(self.total_bytes_processed / max(self.data_added, 1), 2)


@dataclass(frozen=True)
class Node:
    """A file or folder in a snapshot, as ``restic ls --json`` prints it."""

    path: str
    type: str
    size: int
    mtime: str
    ctime: str

    @property
    def fingerprint(self) -> dict[str, Any]:
        """restic re-reads a file only when one of these changed; equal ⇒ same stored content."""
        return {"size": self.size, "mtime": self.mtime, "ctime": self.ctime}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    damaged_packs: tuple[str, ...]
    errors: tuple[str, ...]
    read_data_subset: str | None


def _paths(out: str) -> set[str]:
    """The ``path`` of each object ``restic find --json`` printed (one or more JSON arrays)."""
    found: set[str] = set()
    start = out.find("[")
    if start < 0:
        return found
    try:
        for obj in json.loads(out[start:]):
            if obj.get("path"):
                found.add(obj["path"])
    except ValueError:
        for m in re.finditer(r'"path":"([^"]+)"', out):
            found.add(m.group(1))
    return found


def _split_sftp(repository: str) -> tuple[str, str]:
    """``sftp:user@host:/path`` → (``user@host``, ``/path``)."""
    rest = repository[len("sftp:"):]
    if rest.startswith("//"):
        raise ResticError("use the form sftp:user@host:/path and put the port in the target's sftp.port")
    host, sep, path = rest.partition(":")
    if not sep or not host or not path:
        raise ResticError(f"not an sftp repository of the form sftp:user@host:/path: {repository!r}")
    return host, path


class Restic:
    """One restic repository, reached with one set of credentials.

    :param repository: restic repository string (a path, ``sftp:user@host:/path``, ``s3:…``).
    :param credentials: password and transport secrets; see :class:`ResticCredentials`.
    :param binary: the restic executable.
    :param host: host name written into snapshots (stable across Airflow workers so that
        restic finds the parent snapshot and only reads changed files).
    :param label: name used in messages (the backup target's name).
    """

    def __init__(self, repository: str, credentials: ResticCredentials, *, binary: str = "restic",
                 host: str = "microfair", cache_dir: str | None = None, label: str | None = None,
                 on_start: Callable[[subprocess.Popen], None] | None = None) -> None:
        self.repository = repository
        self.credentials = credentials
        self.binary = binary
        self.host = host
        self.cache_dir = cache_dir
        self.label = label or repository
        self.on_start = on_start

    # -- plumbing -----------------------------------------------------------
    def _args(self, *args: str) -> list[str]:
        cmd = [self.binary, "--repo", self.repository, "--no-cache" if self.cache_dir == "" else ""]
        cmd = [c for c in cmd if c]
        if self.cache_dir:
            cmd += ["--cache-dir", self.cache_dir]
        if self.repository.startswith("sftp:"):
            cmd += ["-o", f"sftp.command={self._ssh_command()}"]
        return cmd + list(args)

    def _ssh_command(self) -> str:
        c = self.credentials
        host, _ = _split_sftp(self.repository)
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", f"ConnectTimeout={c.ssh_connect_timeout}", "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=3"]
        if c.ssh_port:
            ssh += ["-p", str(c.ssh_port)]
        if c.ssh_identity_file:
            ssh += ["-i", c.ssh_identity_file, "-o", "IdentitiesOnly=yes"]
        if c.ssh_known_hosts_file:
            ssh += ["-o", f"UserKnownHostsFile={c.ssh_known_hosts_file}"]
        ssh += [host, "-s", "sftp"]
        return shlex.join(ssh)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_") and not k.startswith("AWS_")}
        c = self.credentials
        if c.password is not None:
            env["RESTIC_PASSWORD"] = c.password
        elif c.password_file:
            if not Path(c.password_file).is_file():
                raise ResticError(f"target {self.label}: password file {c.password_file} does not exist")
            env["RESTIC_PASSWORD_FILE"] = c.password_file
        else:
            raise ResticError(f"target {self.label}: no repository password (connection or password_file)")
        env.update(c.env)
        env.setdefault("RESTIC_PROGRESS_FPS", "0.2")
        if self.temp_dir:
            os.makedirs(self.temp_dir, exist_ok=True)
            env["TMPDIR"] = self.temp_dir
        return env

    @property
    def temp_dir(self) -> str | None:
        """restic's temporary packs go below the backup cache, so that one volume holds both."""
        if not self.cache_dir:
            return None
        return os.path.join(self.cache_dir, "tmp", re.sub(r"[^A-Za-z0-9_-]", "_", self.label))

    def remove_partials(self) -> list[str]:
        """Delete the temporary packs a failed restic left in this target's part of the backup cache."""
        removed: list[str] = []
        if not self.temp_dir or not os.path.isdir(self.temp_dir):
            return removed
        for entry in os.scandir(self.temp_dir):
            if entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed.append(entry.path)
                except OSError:
                    pass
        return removed

    def scrub(self, text: str) -> str:
        for s in self.credentials.secrets():
            text = text.replace(s, "***")
        return text

    def _fail(self, verb: str, rc: int | None, stderr: str) -> ResticError:
        return failure(self, verb, rc, stderr)

    def repository_is_local(self) -> bool:
        return "://" not in self.repository and ":" not in self.repository.split("/", 1)[0]

    def popen(self, *args: str, stdout: int | IO[Any] = subprocess.PIPE) -> subprocess.Popen:
        cmd = self._args(*args)
        log.debug("target %s: running restic %s", self.label, args[0] if args else "")
        try:
            proc = subprocess.Popen(cmd, env=self._env(), stdout=stdout, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ResticNotInstalled(f"target {self.label}: restic is not installed (apt-get install restic); "
                                     f"{self.binary!r} was not found on PATH") from None
        except PermissionError:
            raise ResticNotInstalled(f"target {self.label}: {self.binary!r} is not executable") from None
        if self.on_start:
            self.on_start(proc)
        return proc

    def run(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> tuple[str, str, int]:
        proc = self.popen(*args)
        out, err = proc.communicate()
        out_s, err_s = out.decode(errors="replace"), err.decode(errors="replace")
        if proc.returncode not in ok_codes:
            raise self._fail(args[0], proc.returncode, err_s + ("\n" + out_s if not out_s.startswith("{") else ""))
        return out_s, err_s, proc.returncode

    # -- commands -----------------------------------------------------------
    def unlock(self, *, create: bool = False) -> bool:
        """Remove stale locks (left by a restic that was killed; live locks are kept).

        With ``create``, a repository that does not exist yet is initialised; returns True then.
        """
        try:
            self.run("unlock")
            return False
        except RepositoryUnreachable as exc:
            low = exc.stderr.lower()
            if not create or "config" not in low or not ("no such file" in low or "does not exist" in low):
                raise
        self.run("init")
        log.info("target %s: created restic repository %s", self.label, self.repository)
        return True

    def backup(self, paths: list[str], *, tags: list[str]) -> BackupSummary:
        args = ["backup", "--json", "--host", self.host]
        for t in tags:
            args += ["--tag", t]
        proc = self.popen(*args, *paths)
        summary: dict[str, Any] | None = None
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("message_type") == "summary":
                summary = msg
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
        # 3 = snapshot written but some source files could not be read: those datasets stay unverified.
        if rc not in (0, 3) or summary is None:
            raise self._fail("backup", rc, err)
        warnings = tuple(self.scrub(ln) for ln in err.splitlines() if ln.strip()) if rc == 3 else ()
        return BackupSummary(
            snapshot_id=str(summary["snapshot_id"]),
            files_new=int(summary.get("files_new", 0)), files_changed=int(summary.get("files_changed", 0)),
            files_unmodified=int(summary.get("files_unmodified", 0)), data_added=int(summary.get("data_added", 0)),
            total_files_processed=int(summary.get("total_files_processed", 0)),
            total_bytes_processed=int(summary.get("total_bytes_processed", 0)),
            total_duration=float(summary.get("total_duration", 0.0)), warnings=warnings)

    def snapshots(self, *, tag: str | None = None) -> list[dict[str, Any]]:
        args = ["snapshots", "--json", "--host", self.host]
        if tag:
            args += ["--tag", tag]
        out, _, _ = self.run(*args)
        return sorted(json.loads(out or "[]") or [], key=lambda s: s["time"])

    def ls(self, snapshot: str, *paths: str) -> Iterator[Node]:
        out, _, _ = self.run("ls", "--json", *(["--recursive"] if paths else []), snapshot, *paths)
        for line in out.splitlines():
            if not line.startswith("{"):
                continue
            obj = json.loads(line)
            if obj.get("struct_type") != "node":
                continue
            yield Node(path=obj["path"], type=obj["type"], size=int(obj.get("size", 0)),
                       mtime=str(obj.get("mtime")), ctime=str(obj.get("ctime")))

    def check(self, read_data_subset: str | None) -> CheckResult:
        args = ["check"]
        if read_data_subset in ("100%", "all"):
            args.append("--read-data")
        elif read_data_subset:
            args.append(f"--read-data-subset={read_data_subset}")
        proc = self.popen(*args)
        out, err = proc.communicate()
        text = self.scrub(out.decode(errors="replace") + "\n" + err.decode(errors="replace"))
        if proc.returncode == 0:
            return CheckResult(True, (), (), read_data_subset)
        low = text.lower()
        if "unable to open" in low or "connection refused" in low or "ssh command exited" in low:
            raise self._fail("check", proc.returncode, text)
        errors = tuple(ln.strip() for ln in text.splitlines()
                       if ln.strip() and not ln.startswith(("[", "read ", "check ", "load ", "using ", "create "))
                       and "% " not in ln)
        packs: list[str] = []
        for ln in errors:
            if "pack" not in ln.lower():
                continue
            m = re.search(r"want ([0-9a-f]{64})", ln)
            ids = [m.group(1)] if m else _HEX64.findall(ln)[:1]
            packs += [i for i in ids if i not in packs]
        return CheckResult(False, tuple(packs), errors, read_data_subset)

    def paths_in_packs(self, pack_ids: list[str]) -> set[str]:
        """Every file path (any snapshot) with content in these packs (``find --pack``: reads the pack headers)."""
        if not pack_ids:
            return set()
        out, _, _ = self.run("find", "--json", "--pack", *pack_ids)
        return _paths(out)

    def packs_of_blobs(self, blob_ids: list[str]) -> set[str]:
        """The packs that hold these blobs (``restic find --show-pack-id --blob``)."""
        if not blob_ids:
            return set()
        out, err, _ = self.run("find", "--show-pack-id", "--blob", *blob_ids, ok_codes=(0, 1))
        return set(_PACK_OF.findall(out + "\n" + err))

    def blobs_in_packs(self, pack_ids: list[str]) -> set[str]:
        """Every blob the index places in these packs (``restic list index`` + ``cat index``).

        Read from the index, not from the packs: a damaged pack header cannot be read, and
        ``restic find --pack`` (which reads it) then fails.
        """
        wanted = set(pack_ids)
        found: set[str] = set()
        if not wanted:
            return found
        out, _, _ = self.run("list", "index")
        for index_id in [ln.strip() for ln in out.splitlines() if _HEX64.fullmatch(ln.strip())]:
            text, _, _ = self.run("cat", "index", index_id)
            try:
                index = json.loads(text)
            except ValueError:
                continue
            for pack in index.get("packs") or []:
                if pack.get("id") in wanted:
                    found.update(b["id"] for b in pack.get("blobs") or [] if b.get("id"))
        return found

    def paths_of_blobs(self, blob_ids: list[str]) -> set[str]:
        """Every file path (in any snapshot) whose content includes one of these blobs (``find --blob``)."""
        if not blob_ids:
            return set()
        out, _, _ = self.run("find", "--json", "--blob", *blob_ids)
        return _paths(out)

    def open(self) -> None:
        """Prove the repository exists and opens with our key (``restic cat config``); raises otherwise."""
        self.run("cat", "config")

    def dump(self, snapshot: str, path: str, sink: Callable[[bytes], None], chunk: int = 4 << 20) -> int:
        """Stream one file out of a snapshot into ``sink``; return its size. Raises on any read error."""
        proc = self.popen("dump", snapshot, path)
        assert proc.stdout is not None
        size = 0
        while block := proc.stdout.read(chunk):
            sink(block)
            size += len(block)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
        if rc != 0:
            raise self._fail("dump", rc, err)
        return size

    def forget(self, *, keep_daily: int, keep_weekly: int, keep_monthly: int, prune: bool) -> dict[str, Any]:
        args = ["forget", "--json", "--host", self.host, "--keep-last", "1"]
        args += ["--keep-daily", str(keep_daily), "--keep-weekly", str(keep_weekly),
                 "--keep-monthly", str(keep_monthly)]
        if prune:
            args.append("--prune")
        out, _, _ = self.run(*args)
        removed = 0
        kept = 0
        for line in out.splitlines():
            if line.startswith("["):
                try:
                    for group in json.loads(line):
                        removed += len(group.get("remove") or [])
                        kept += len(group.get("keep") or [])
                except ValueError:
                    pass
        return {"snapshots_removed": removed, "snapshots_kept": kept, "pruned": prune}

    def stats_raw(self) -> dict[str, Any]:
        out, _, _ = self.run("stats", "--json", "--mode", "raw-data")
        try:
            return json.loads(out)
        except ValueError:
            return {}
