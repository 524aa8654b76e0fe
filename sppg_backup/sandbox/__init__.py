"""Throwaway PostgreSQL clusters and Prefect servers for the demo, the tests and the benchmarks (an edge: it
runs flows, and the core never imports it)."""
