"""Prefect flows: one module per procedure of the guide."""
