"""Logical dumps of the database: dump, catalog, restore (plain and streamed), verify, drill, retention, prune."""
