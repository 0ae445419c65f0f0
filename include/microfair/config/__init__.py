"""The facility configuration: one YAML file named by ``MICROFAIR_CONFIG``.

It is validated with pydantic at load time. A bad key or value raises
:class:`ConfigError` whose message names the key (as a dotted path) and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from microfair.config.backup import BackupSettings, BackupTarget, RetentionSettings
from microfair.config.core import (
    ConversionSettings,
    DaskSettings,
    FacilityInfo,
    LandingZone,
    LedgerSettings,
    NamingPolicy,
    ProjectDefaults,
    QcThresholds,
    StorageRoots,
    Strict,
)
from microfair.config.eln import ElnSettings
from microfair.config.forecast import ForecastSettings
from microfair.config.monitor import AlertSettings, DashboardSettings
from microfair.config.publish import BiostudiesSettings, DataciteSettings, IrodsSettings

ENV_VAR = "MICROFAIR_CONFIG"
LEDGER_URL_VAR = "MICROFAIR_LEDGER_URL"

__all__ = [
    "ENV_VAR",
    "BackupTarget",
    "ConfigError",
    "FacilityConfig",
    "LandingZone",
    "init_local_config",
    "load_config",
]


class ConfigError(ValueError):
    """The facility configuration is missing or invalid."""


class FacilityConfig(Strict):
    facility: FacilityInfo
    storage: StorageRoots
    ledger: LedgerSettings
    landing_zones: list[LandingZone] = Field(min_length=1)
    schedule: str | None = Field("*/10 * * * *", description="cron for microfair_ingest; null = manual")
    naming: NamingPolicy = Field(default_factory=NamingPolicy)
    qc: QcThresholds = Field(default_factory=QcThresholds)
    conversion: ConversionSettings = Field(default_factory=ConversionSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    projects: dict[str, ProjectDefaults] = Field(default_factory=dict)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    irods: IrodsSettings = Field(default_factory=IrodsSettings)
    biostudies: BiostudiesSettings = Field(default_factory=BiostudiesSettings)
    datacite: DataciteSettings = Field(default_factory=DataciteSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    eln: ElnSettings = Field(default_factory=ElnSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)

    @model_validator(mode="after")
    def _unique_microscopes(self) -> "FacilityConfig":
        names = [z.microscope for z in self.landing_zones]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"landing_zones: microscope names must be unique, repeated: {dupes}")
        return self

    def zone(self, microscope: str) -> LandingZone:
        for z in self.landing_zones:
            if z.microscope == microscope:
                return z
        raise KeyError(f"no landing zone for microscope {microscope!r}")

    def project_defaults(self, acronym: str) -> ProjectDefaults:
        return self.projects.get(acronym) or ProjectDefaults()


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid facility configuration {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        reason = e["msg"]
        if e["type"] == "extra_forbidden":
            reason = "unknown key"
        lines.append(f"  - {key}: {reason}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "(in memory)") -> FacilityConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid facility configuration {source}: the top level must be a mapping")
    try:
        return FacilityConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> FacilityConfig:
    """Load and validate the configuration from ``path`` or ``$MICROFAIR_CONFIG``."""
    if path is None:
        path = os.environ.get(ENV_VAR)
        if not path:
            raise ConfigError(f"no configuration: set {ENV_VAR} or run 'microfair config init DIR'")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration {p} is not valid YAML: {exc}") from None
    if os.environ.get(LEDGER_URL_VAR) and isinstance(data, dict):
        # The production ledger URL carries a password: it comes from the environment, not the file.
        data.setdefault("ledger", {})["url"] = os.environ[LEDGER_URL_VAR]
    return parse_config(data, str(p))


def init_local_config(root: str | os.PathLike[str], microscopes: tuple[str, ...] = ("demo-scope",)) -> Path:
    """Write a runnable single-machine configuration rooted in ``root``; return its path."""
    root = Path(root).resolve()
    cfg = {
        "facility": {"name": "Local microfair facility", "institution": "Example institute",
                     "contact_email": "facility@example.org"},
        "storage": {tier: str(root / "storage" / tier) for tier in ("raw", "converted", "quarantine", "reports")},
        "ledger": {"url": f"sqlite:///{root / 'ledger.db'}"},
        "landing_zones": [
            {"microscope": m, "path": str(root / "landing" / m), "stability_seconds": 2.0}
            for m in microscopes
        ],
        "schedule": "*/10 * * * *",
        "naming": {"policy": "flag"},
        "projects": {"DEMO": {"title": "microfair demonstration project", "owner": "facility",
                              "group": "demo", "organism": "Homo sapiens", "ncbi_taxon": "NCBITaxon_9606"}},
        "backup": {"targets": [
            {"name": "second-disk", "medium": "disk", "offsite": False,
             "repository": str(root / "backup" / "second-disk"),
             "password_file": str(root / "secrets" / "restic-password")},
            {"name": "offsite", "medium": "remote-server", "offsite": True,
             "repository": str(root / "backup" / "offsite"),
             "password_file": str(root / "secrets" / "restic-password")},
        ]},
    }
    root.mkdir(parents=True, exist_ok=True)
    for tier in cfg["storage"].values():
        Path(tier).mkdir(parents=True, exist_ok=True)
    for z in cfg["landing_zones"]:
        Path(z["path"]).mkdir(parents=True, exist_ok=True)
    secrets = root / "secrets"
    secrets.mkdir(exist_ok=True, mode=0o700)
    pw = secrets / "restic-password"
    if not pw.exists():
        import secrets as _s

        pw.write_text(_s.token_urlsafe(32) + "\n")
        pw.chmod(0o600)
    parse_config(cfg)  # what we write must load
    out = root / "microfair.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return out
