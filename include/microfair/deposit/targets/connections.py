"""From a connection's fields to a target client, in plain functions (the hooks and the CLI share them).

Dataverse (``dataverse_default``): ``host`` = the installation (``https://entrepot.recherche.data.gouv.fr``),
``password`` = the API token; extras ``collection`` (alias, default ``root``), ``direct_upload``
(``auto`` | ``true`` | ``false``), ``max_files_per_request`` (default 1000), ``biomedical`` (fill the
biomedical block).

Zenodo (``zenodo_default``): ``host`` = ``https://zenodo.org`` or ``https://sandbox.zenodo.org``,
``password`` = the personal access token; extras ``community``, ``max_files`` (100), ``max_bytes`` (50 GB).

The CLI reads the same connection from the environment (``AIRFLOW_CONN_DATAVERSE_DEFAULT``, JSON or URI),
as Airflow does; a token never comes from the study file or the facility file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass(frozen=True)
class ConnectionFields:
    host: str
    login: str = ""
    password: str = field(default="", repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


def _truthy(v: Any) -> bool | None:
    if v is None or str(v).lower() in ("", "auto"):
        return None
    return str(v).lower() in ("1", "true", "yes", "on")


def base_url(host: str | None, default: str, schema: str | None = None, port: int | None = None) -> str:
    h = (host or default).rstrip("/")
    if "://" in h:
        return h
    return f"{schema or 'https'}://{h}{f':{port}' if port else ''}"


def dataverse_target(conn: ConnectionFields, **kw: Any) -> Any:
    from microfair.deposit.dataverse import DataverseTarget

    x = conn.extra
    return DataverseTarget(base_url(conn.host, "entrepot.recherche.data.gouv.fr"), conn.password,
                           str(x.get("collection") or "root"), direct_upload=_truthy(x.get("direct_upload")),
                           max_files_per_request=int(x.get("max_files_per_request") or 1000),
                           biomedical=bool(_truthy(x.get("biomedical"))), **kw)


def zenodo_target(conn: ConnectionFields, **kw: Any) -> Any:
    from microfair.deposit.zenodo import MAX_BYTES, MAX_FILES, ZenodoTarget

    x = conn.extra
    return ZenodoTarget(base_url(conn.host, "zenodo.org"), conn.password, community=x.get("community") or None,
                        max_files=int(x.get("max_files") or MAX_FILES), max_bytes=int(x.get("max_bytes") or MAX_BYTES),
                        **kw)


BUILDERS = {"dataverse": dataverse_target, "zenodo": zenodo_target}


def from_environment(conn_id: str, env: dict[str, str] | None = None) -> ConnectionFields | None:
    """``AIRFLOW_CONN_<ID>`` (Airflow's JSON form or URI form) as connection fields; None when unset."""
    env = os.environ if env is None else env
    raw = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw:
        return None
    if raw.lstrip().startswith("{"):
        d = json.loads(raw)
        extra = d.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
        host = str(d.get("host") or "")
        if "://" not in host and d.get("schema") in ("http", "https"):
            host = base_url(host, host, d.get("schema"), d.get("port"))
        elif "://" not in host and d.get("port"):
            host = f"{host}:{d['port']}"
        return ConnectionFields(host, str(d.get("login") or ""), str(d.get("password") or ""), dict(extra))
    u = urlsplit(raw)
    query = dict(parse_qsl(u.query))
    extra = json.loads(query.pop("__extra__")) if "__extra__" in query else query
    scheme = "http" if u.scheme.endswith("http") and not u.scheme.endswith("https") else "https"
    host = f"{scheme}://{u.hostname}{f':{u.port}' if u.port else ''}{u.path if u.path not in ('', '/') else ''}"
    return ConnectionFields(host, unquote(u.username or ""), unquote(u.password or ""), extra)


def target_from_environment(name: str, conn_id: str, **kw: Any) -> Any:
    conn = from_environment(conn_id)
    if conn is None:
        raise LookupError(f"no connection {conn_id!r}: set AIRFLOW_CONN_{conn_id.upper()} (JSON: host, password = "
                          "token, extra) or run the deposit from Airflow")
    return BUILDERS[name](conn, **kw)
