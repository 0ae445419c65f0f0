"""microfair: the FAIR research-data life cycle of a light-microscopy facility.

Plain-Python domain package. Nothing here imports Airflow; the DAGs, operators
and plugins under ``dags/`` and ``plugins/`` are thin glue over these modules.
"""

__version__ = "0.1.0"
