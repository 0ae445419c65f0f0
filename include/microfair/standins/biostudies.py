"""A local BioStudies submission API (HTTP on 127.0.0.1) and its FTP server (pyftpdlib), for demos and tests.

It honours the contracts in INTERFACES.md (biostudies-backend-services):

* ``POST /auth/login`` → UserProfile with ``sessid`` and ``secret``; a wrong password → 401 with a
  ``{"status":"FAIL","log":{…}}`` tree; every other call without a valid ``X-Session-Token`` → 401.
* ``GET/POST/DELETE /files/user/<dir>`` (list, multipart field ``files``, ``?fileName=``),
  ``POST /folder/user/<dir>?folder=NAME``. Files are kept on disk (``user_dir(login)``) so that tests
  can compare checksums; the FTP server's home for each user's secret directory is the same folder.
* ``POST /submissions/async`` (``Submission_Type: application/json``) → ``{accNo, version}``; a body
  that is not PageTab → 400 with a FAIL tree. The request then moves through REQUESTED, FILES_VALIDATED,
  PROCESSED to POST_PROCESSED, one state per status poll, or to INVALID when a file list names a file
  that is not in the user folder (the errors at ``/submissions/requests/{accNo}/{version}/errors``).
* ``GET /submissions/{accNo}.json`` → the stored submission with its DOI (10.6019/<accNo>).

The HTTP side is a :class:`~microfair.standins._http.HttpStandin`. Fault injection: ``fail_next(prefix, n,
kind)`` (from that base) answers the next ``n`` requests whose path starts with ``prefix`` with HTTP 500/503
(``kind="500"``, body a FAIL tree) or resets the connection (``kind="reset"``);
``ftp_drop_after(bytes, n)`` breaks the next ``n`` FTP uploads after that many bytes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import socket
import struct
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from microfair.standins._http import HttpStandin, Req

STATES = ["REQUESTED", "FILES_VALIDATED", "PROCESSED", "POST_PROCESSED"]


def fail(message: str, *subs: str) -> dict[str, Any]:
    return {"status": "FAIL", "log": {"level": "ERROR", "message": message,
                                      "subnodes": [{"level": "ERROR", "message": s, "subnodes": []} for s in subs]}}


def _inside(home: Path, *parts: str) -> Path | None:
    """``home/parts`` resolved, or None when it would lie outside ``home`` (``..``, an absolute path)."""
    base = home.resolve()
    target = base.joinpath(*parts).resolve()
    return target if target.is_relative_to(base) else None


@dataclass
class Request:
    accno: str
    version: int
    pagetab: dict[str, Any]
    owner: str
    polls: int = 0
    errors: list[str] = field(default_factory=list)


class BiostudiesStandin(HttpStandin):
    """Start with ``with BiostudiesStandin(tmp_path, users={"me@x.org": "pw"}) as bs: bs.url …``."""

    def __init__(self, root: Path, users: dict[str, str], *, ftp_user: str = "bsftp",
                 ftp_password: str | None = None) -> None:
        """``ftp_password``: the FTP account's; a fresh random one when None (read it as ``ftp_password``)."""
        super().__init__()
        self.root = Path(root)
        self.users = dict(users)
        self.secrets = {u: f"{uuid.uuid4().hex[:2]}/{uuid.uuid4()}-{i}" for i, u in enumerate(users)}
        self.tokens: dict[str, str] = {}
        self.requests: dict[tuple[str, int], Request] = {}
        self.submissions: dict[str, dict[str, Any]] = {}
        self.ftp_faults: list[int] = []
        self.ftp_user, self.ftp_password = ftp_user, ftp_password or secrets.token_urlsafe(12)
        self._next_acc = 100
        for u in users:
            self.user_dir(u).mkdir(parents=True, exist_ok=True)

    # -- helpers for tests ------------------------------------------------------------------------------
    def user_dir(self, login: str) -> Path:
        return self.root / "users" / self.secrets[login]

    def sha256(self, login: str, rel: str) -> str:
        return hashlib.sha256((self.user_dir(login) / rel).read_bytes()).hexdigest()

    def files(self, login: str) -> list[str]:
        base = self.user_dir(login)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def ftp_drop_after(self, nbytes: int, n: int = 1) -> None:
        self.ftp_faults.extend([nbytes] * n)

    def fault_body(self, code: int) -> dict[str, Any]:
        return fail("Internal server error")

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self) -> "BiostudiesStandin":
        super().__enter__()
        standin = self

        auth = DummyAuthorizer()
        auth.add_user(self.ftp_user, self.ftp_password, str(self.root / "users"), perm="elradfmwMT")

        class Dtp(DTPHandler):
            received = 0

            def handle_read(self) -> None:  # noqa: D401 - pyftpdlib hook
                super().handle_read()
                limit = standin.ftp_faults[0] if standin.ftp_faults else None
                if limit is not None and self.tot_bytes_received >= limit:
                    standin.ftp_faults.pop(0)
                    self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.file_obj.flush()
                    cmd = self.cmd_channel  # a network drop breaks the control connection too
                    self.close()
                    cmd.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    cmd.close()

            handle_read_event = handle_read  # pyftpdlib's ioloop calls this alias

        class Ftp(FTPHandler):
            authorizer = auth
            dtp_handler = Dtp
            passive_ports = None
            banner = "BioStudies stand-in FTP"

        self.ftp = FTPServer(("127.0.0.1", 0), Ftp, ioloop=IOLoop())  # its own loop, not the shared singleton
        self.ftp_port = self.ftp.address[1]
        threading.Thread(target=self.ftp.serve_forever, kwargs={"timeout": 0.2}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self.ftp.close_all()

    # -- submissions ----------------------------------------------------------------------------------
    def submit(self, login: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            pagetab = json.loads(body)
        except ValueError as exc:
            return 400, fail("Submission request can't be processed", f"invalid JSON: {exc}")
        problems = []
        section = pagetab.get("section") if isinstance(pagetab, dict) else None
        if not isinstance(section, dict):
            problems.append("Submission must have a root section")
        elif not section.get("type"):
            problems.append("Section type is required")
        attrs = {a.get("name"): a.get("value") for a in (pagetab.get("attributes") or [])} if isinstance(pagetab, dict) else {}
        if not attrs.get("Title") and not (section or {}).get("attributes"):
            problems.append("Submission title is required")
        if problems:
            return 400, fail("Submission validation errors", *problems)
        with self.lock:
            accno = pagetab.get("accno") or f"S-BIAD{self._next_acc}"
            if not pagetab.get("accno"):
                self._next_acc += 1
            version = 1 + sum(1 for (a, _v) in self.requests if a == accno)
            req = Request(accno, version, pagetab, login)
            req.errors = self._check_files(login, pagetab)
            self.requests[(accno, version)] = req
        return 200, {"accNo": accno, "version": version}

    def _check_files(self, login: str, pagetab: dict[str, Any]) -> list[str]:
        root = self.user_dir(login)
        rootpath = next((a["value"] for a in pagetab.get("attributes", []) if a.get("name") == "RootPath"), "")
        errors = []

        def walk(s: dict[str, Any]) -> None:
            for a in s.get("attributes", []):
                if a.get("name") == "File List":
                    fl = root / rootpath / a.get("value", "")
                    if not fl.is_file():
                        errors.append(f"File list '{a.get('value')}' could not be found")
                        continue
                    for entry in json.loads(fl.read_text()):
                        f = root / rootpath / entry["path"]
                        if not f.is_file():
                            errors.append(f"The following files could not be found: {entry['path']}")
                        elif entry.get("size") is not None and f.stat().st_size != entry["size"]:
                            errors.append(f"File {entry['path']} size {f.stat().st_size} != {entry['size']}")
            for sub in s.get("subsections", []):
                for x in sub if isinstance(sub, list) else [sub]:
                    walk(x)

        walk(pagetab.get("section", {}))
        return errors

    def status(self, accno: str, version: int) -> str | None:
        req = self.requests.get((accno, version))
        if req is None:
            return None
        with self.lock:
            i = min(req.polls, len(STATES) - 1)
            req.polls += 1
            if req.errors and i >= 1:
                return "INVALID"
            state = STATES[i]
            if state == "POST_PROCESSED" and accno not in self.submissions or \
                    (state == "POST_PROCESSED" and self.submissions[accno].get("_version") != version):
                stored = json.loads(json.dumps(req.pagetab))
                stored["accno"] = accno
                stored["attributes"] = [a for a in stored.get("attributes", []) if a.get("name") != "DOI"]
                stored["attributes"].append({"name": "DOI", "value": f"10.6019/{accno}"})
                stored["_version"] = version
                self.submissions[accno] = stored
            return state

    # -- the HTTP API -----------------------------------------------------------------------------------
    def handle(self, req: Req) -> tuple[Any, ...]:
        if req.path in ("/auth/login", "/auth/signin") and req.method == "POST":
            return self._login(req)
        token = req.headers.get("X-Session-Token")
        login = self.tokens.get(token or "")
        if login is None:
            return 401, fail("Authentication required: invalid or expired session token")
        if req.path == "/auth/logout":
            self.tokens.pop(token, None)
            return 200, {}
        if req.path.startswith("/files/user"):
            return self._files(req, login)
        if req.path.startswith("/folder/user") and req.method == "POST":
            rel = req.path[len("/folder/user"):].strip("/")
            folder = _inside(self.user_dir(login), rel, req.query.get("folder", ""))
            if folder is None:
                return 403, fail("forbidden path")
            folder.mkdir(parents=True, exist_ok=True)
            return 200, None
        if req.path in ("/submissions/async", "/submissions") and req.method == "POST":
            if req.headers.get("Submission_Type") not in ("application/json",):
                return 415, fail("Unsupported submission format")
            return self.submit(login, req.body)
        parts = req.path.strip("/").split("/")
        if len(parts) == 5 and parts[:2] == ["submissions", "requests"] and req.method == "GET":
            accno, version, what = parts[2], int(parts[3]), parts[4]
            request = self.requests.get((accno, version))
            if request is None:
                return 404, fail(f"request {accno}/{version} not found")
            if what == "status":
                return 200, str(self.status(accno, version)).encode(), {"Content-Type": "text/plain"}
            if what == "errors":
                return 200, request.errors
        if len(parts) == 2 and parts[0] == "submissions" and parts[1].endswith(".json") and req.method == "GET":
            sub = self.submissions.get(parts[1][:-5])
            if sub is None:
                return 404, fail(f"submission {parts[1][:-5]} not found")
            return 200, {k: v for k, v in sub.items() if not k.startswith("_")}
        return 404, fail(f"no endpoint {req.method} {req.path}")

    def _login(self, req: Req) -> tuple[int, dict[str, Any]]:
        try:
            creds = json.loads(req.body or b"{}")
        except ValueError:
            creds = {}
        login = creds.get("login") if isinstance(creds, dict) else None
        if login in self.users and self.users[login] == creds.get("password"):
            token = uuid.uuid4().hex
            self.tokens[token] = login
            return 200, {"sessid": token, "email": login, "username": login.split("@")[0],
                         "secret": self.secrets[login], "fullname": login, "superuser": False,
                         "orcid": None, "allow": [], "deny": [], "uploadType": "ftp"}
        return 401, fail("Invalid email address or password.")

    def _files(self, req: Req, login: str) -> tuple[int, Any]:
        home = self.user_dir(login)
        rel = req.path[len("/files/user"):].strip("/")
        target = _inside(home, rel)
        if target is None:
            return 403, fail("forbidden path")
        if req.method == "GET" and req.query.get("fileName"):  # download one file (octet stream)
            f = _inside(target, req.query["fileName"])
            if f is None or not f.is_file():
                return 404, fail(f"file {req.query['fileName']} not found in {rel}")
            return 200, f.read_bytes(), {"Content-Type": "application/octet-stream"}
        if req.method == "GET":
            if not target.is_dir():
                return 404, fail(f"folder {rel} not found")
            return 200, [{"name": p.name, "path": f"user/{rel}".rstrip("/"),
                          "size": p.stat().st_size if p.is_file() else 0,
                          "type": "FILE" if p.is_file() else "DIR"} for p in sorted(target.iterdir())]
        if req.method == "POST":
            parts = req.parts()
            if parts is None:
                return 400, fail("multipart/form-data expected")
            target.mkdir(parents=True, exist_ok=True)
            for name, filename, data in parts:
                base = Path(filename or "").name
                if name == "files" and base:
                    tmp = target / f".{base}.part"
                    tmp.write_bytes(data)
                    tmp.replace(target / base)
            return 200, None
        if req.method == "DELETE":
            f = _inside(target, req.query.get("fileName", ""))
            if f is None or f == target:
                return 403, fail("forbidden path")
            if f.is_file():
                f.unlink()
            elif f.is_dir():
                shutil.rmtree(f)
            return 200, None
        return 404, fail(f"no endpoint {req.method} {req.path}")
