"""Helpers shared by several test modules (not tests themselves): services, Airflow stacks."""
