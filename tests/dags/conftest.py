"""DAG tests use the root conftest's ``airflow_home`` fixture and run DAGs with tests.dags.runner."""
