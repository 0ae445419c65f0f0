"""Browser tests: one Airflow API server for the package (tests/browser/conftest.py), Debian's Chromium."""
