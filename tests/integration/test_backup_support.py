"""Helpers for the backup and retention tests (no tests here): seeded datasets and a real sshd on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from blake3 import blake3

from microfair.config import FacilityConfig
from microfair.config.backup import BackupTarget, SftpSettings
from microfair.ledger import Ledger


def seed_dataset(cfg: FacilityConfig, ledger: Ledger, stem: str, *, size: int = 200_000, project: str = "DEMO",
                 age_days: float = 90, seed: int | None = None, zone: int = 0) -> str:
    """A dataset as ingest leaves it (state qc_done): landing file, read-only raw copy, a Zarr, a record."""
    rnd = seed if seed is not None else zlib.crc32(stem.encode())
    data = _bytes(size, rnd)
    study, exp = "Study", "2025-01-01"
    name = f"2025-01-01_{project}_{stem}_RAW_v01.ome.tiff"
    landing = Path(cfg.landing_zones[zone].path) / project / study / exp / name
    landing.parent.mkdir(parents=True, exist_ok=True)
    landing.write_bytes(data)
    raw = Path(cfg.storage.raw) / project / study / exp / name
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(data)
    raw.chmod(0o444)
    zarr = Path(cfg.storage.converted) / project / study / exp / (name.removesuffix(".ome.tiff") + ".ome.zarr")
    (zarr / "0").mkdir(parents=True, exist_ok=True)
    (zarr / "zarr.json").write_text('{"zarr_format": 3}')
    (zarr / "0" / "c0").write_bytes(data[: size // 4])
    record = Path(cfg.storage.reports) / project / f"{stem}.dublin_core.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f'{{"title": "{stem}"}}')
    uid = hashlib.sha1(stem.encode()).hexdigest()[:16]
    old = time.time() - age_days * 86400
    os.utime(landing, (old, old))
    collected = datetime.now(timezone.utc) - timedelta(days=age_days)
    ledger.upsert_dataset(uid, microscope=cfg.landing_zones[zone].microscope, source_path=str(landing), name=name,
                          project=project, study=study, experiment=exp, raw_path=str(raw), zarr_path=str(zarr),
                          size_bytes=size, sha256=hashlib.sha256(data).hexdigest(),
                          blake3=blake3(data).hexdigest(), state="qc_done", collected_at=collected,
                          source_mtime_ns=landing.stat().st_mtime_ns)
    ledger.add_file(uid, "raw", raw, size_bytes=size, sha256=hashlib.sha256(data).hexdigest())
    ledger.add_file(uid, "zarr", zarr)
    rec = record.read_bytes()
    ledger.add_file(uid, "record", record, size_bytes=len(rec), sha256=hashlib.sha256(rec).hexdigest())
    return uid


def _bytes(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    """A real OpenSSH server on 127.0.0.1 with key authentication only, for an off-site SFTP target."""

    root: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.host_key = self.root / "ssh_host_ed25519_key"
        self.client_key = self.root / "id_ed25519"
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.authorized = self.root / "authorized_keys"
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.authorized)
        self.authorized.chmod(0o600)
        self.port = self.port or free_port()
        self.known_hosts = self.root / "known_hosts"
        pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        self.config = self.root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            f"PidFile {self.root / 'sshd.pid'}", "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
        self.repo_dir = self.root / "offsite-repo"

    @property
    def user(self) -> str:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name

    @property
    def repository(self) -> str:
        return f"sftp:{self.user}@127.0.0.1:{self.repo_dir}"

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder (root)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "sshd.log", "ab"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (self.root / "sshd.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def target(self, password_file: str, name: str = "offsite") -> BackupTarget:
        return BackupTarget(name=name, medium="remote-server", offsite=True, repository=self.repository,
                            password_file=password_file,
                            sftp=SftpSettings(port=self.port, identity_file=str(self.client_key),
                                              known_hosts_file=str(self.known_hosts)))


def mark_backed_up(cfg: FacilityConfig, ledger: Ledger, uids: list[str], *, targets: list[str] | None = None,
                   snapshot: str = "feedc0de", failed: dict[str, str] | None = None) -> None:
    """Record runs and verified copies as run_backup would (for tests that need no restic)."""
    from microfair.backup.run import record_kind

    now = datetime.now(timezone.utc).isoformat()
    for t in cfg.backup.targets:
        if targets is not None and t.name not in targets:
            continue
        if failed and t.name in failed:
            try:
                with ledger.stage(None, "backup") as o:
                    o.details = {"target": t.name}
                    raise RuntimeError(failed[t.name])
            except RuntimeError:
                pass
            continue
        with ledger.stage(None, "backup") as o:
            o.details = {"target": t.name, "snapshot": snapshot}
        for uid in uids:
            ds = ledger.require(uid)
            ledger.put_record(uid, record_kind(t.name), {
                "target": t.name, "snapshot": snapshot, "path": os.path.realpath(ds.raw_path), "verified": True,
                "verified_at": now, "method": "restore"})
