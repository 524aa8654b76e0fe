"""Prefect tasks: thin wrappers giving the core retries, timeouts and log lines."""
