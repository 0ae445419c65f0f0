"""Airflow Assets that chain the microfair DAGs on data rather than on time."""

from airflow.sdk import Asset

#: Emitted by microfair_ingest when at least one acquisition reached the facility storage.
INGESTED = Asset("microfair://facility/ingested")
#: Emitted by microfair_backup when a backup run finished (some targets may have failed).
BACKED_UP = Asset("microfair://facility/backed-up")
