"""Deployment entrypoints: serve everything from one process, or use prefect.yaml with a work pool."""
