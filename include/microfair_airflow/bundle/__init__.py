"""The DAG files and the dashboard plugin, shipped inside the package.

The top-level ``dags/`` and ``plugins/`` folders of the checkout are the source of truth (Airflow's
``dags_folder`` and ``plugins_folder`` point at them in a checkout). ``bundle/dags`` and ``bundle/plugins``
are relative symbolic links to them, so that the wheel (built from the checkout) carries copies of both
as package data: an installed ``microfair`` can then point Airflow at
``<site-packages>/microfair_airflow/bundle/dags`` and ``…/plugins`` with no checkout around. The Docker
image copies ``include/``, ``dags/`` and ``plugins/`` side by side, so the links resolve there too.

:func:`folders` says which pair to use: the checkout's when it is there, else the installed copies.
This module imports nothing from Airflow (``microfair.demo`` calls it before Airflow starts).
"""

from __future__ import annotations

from pathlib import Path

BUNDLE = Path(__file__).resolve().parent
#: the checkout's root when the package runs from a checkout (editable install, PYTHONPATH=include)
CHECKOUT = Path(__file__).resolve().parents[3]


def folders() -> tuple[Path, Path]:
    """``(dags_folder, plugins_folder)``: absolute, and holding the microfair DAG files and dashboard plugin."""
    for root in (CHECKOUT, BUNDLE):
        dags, plugins = root / "dags", root / "plugins"
        if (dags / "microfair_ingest.py").is_file() and (plugins / "microfair_dashboard_plugin.py").is_file():
            return dags.resolve(), plugins.resolve()
    raise FileNotFoundError(f"no microfair DAG folder next to {BUNDLE}: neither a checkout ({CHECKOUT}/dags) "
                            "nor an installed bundle (reinstall the microfair wheel)")
