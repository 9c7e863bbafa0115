"""Helpers that run the pipeline's steps in order: the demo, and what the Airflow DAGs call."""
