-- The microfair ledger lives in its own database beside Airflow's.
CREATE DATABASE microfair OWNER airflow;
