"""Airflow glue for microfair: hooks, operators and sensors over the domain package.

Everything here is thin: a hook owns an Airflow Connection and builds a client,
an operator stores its parameters and calls one domain function.
"""
