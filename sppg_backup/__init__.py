"""sppg-backup core: plain Python, no Prefect import."""

__version__ = "0.1.0"
