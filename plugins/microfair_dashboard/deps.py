"""The dashboard's FastAPI dependencies: the facility (config + ledger), Airflow's REST API, permissions.

Each view asks for what it needs (``Loaded``, ``Api``, ``MayClear``); tests override the
providers (``app.dependency_overrides``) instead of patching modules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status

from microfair.config import FacilityConfig, load_config
from microfair.ledger import Ledger
from microfair.monitor import AirflowApi, change_token, stage_availability
from microfair_dashboard.security import Reader, may_clear, user_token

log = logging.getLogger(__name__)


@dataclass
class Facility:
    """The configuration and ledger, loaded on first use (a bad config shows an error page, not a crash)."""

    cfg: FacilityConfig | None = None
    ledger: Ledger | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _avail: tuple[float, Any] | None = None
    _token: tuple[float, str] | None = None

    def load(self) -> tuple[FacilityConfig, Ledger]:
        with self._lock:
            if self.cfg is None or self.ledger is None:
                cfg = load_config()
                self.ledger = Ledger(cfg.ledger.url, migrate=False)
                self.cfg = cfg
        return self.cfg, self.ledger

    def availability(self, has_conn: Callable[[str], bool]) -> Any:
        cfg, ledger = self.load()
        now = time.monotonic()
        if self._avail is None or now - self._avail[0] > 60:
            self._avail = (now, stage_availability(cfg, ledger, has_connection=has_conn))
        return self._avail[1]

    def token(self) -> str:
        """The ledger's change token, shared by every open page (at most one query per half-interval)."""
        cfg, ledger = self.load()
        now = time.monotonic()
        if self._token is None or now - self._token[0] > cfg.dashboard.refresh_seconds / 2:
            self._token = (now, change_token(ledger))
        return self._token[1]


def facility(request: Request) -> Facility:
    return request.app.state.facility


def load(fac: Annotated[Facility, Depends(facility)]) -> tuple[FacilityConfig, Ledger]:
    try:
        return fac.load()
    except Exception as exc:
        log.exception("dashboard: cannot load the facility configuration or the ledger")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"microfair configuration or ledger unavailable: {exc}") from None


Loaded = Annotated[tuple[FacilityConfig, Ledger], Depends(load)]
FacilityDep = Annotated[Facility, Depends(facility)]


def _airflow_has_connection(conn_id: str) -> bool:
    try:
        from airflow.models.connection import Connection

        Connection.get_connection_from_secrets(conn_id)
        return True
    except Exception:
        return False


def has_connection() -> Callable[[str], bool]:
    """``has(conn_id)``: does an Airflow connection exist (it makes iRODS/BIA "configured")?"""
    return _airflow_has_connection


HasConnection = Annotated[Callable[[str], bool], Depends(has_connection)]


def api_base(cfg: FacilityConfig, request: Request) -> str:
    if cfg.dashboard.airflow_api_url:
        return cfg.dashboard.airflow_api_url
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    if base.startswith("http"):
        return base
    return f"{request.url.scheme}://{request.url.netloc}"


def airflow_api(request: Request, user: Reader, loaded: Loaded) -> AirflowApi:
    """Airflow's REST API, called as the logged-in user (their own JWT)."""
    cfg, _ = loaded
    return AirflowApi(api_base(cfg, request), user_token(request, user), timeout=cfg.dashboard.api_timeout_seconds)


Api = Annotated[Any, Depends(airflow_api)]


def clear_permission() -> Callable[[Any, str | None], bool]:
    """``may(user, dag_id)``: may the user clear task instances (and trigger runs) of that DAG?"""
    return may_clear


MayClear = Annotated[Callable[[Any, str | None], bool], Depends(clear_permission)]
