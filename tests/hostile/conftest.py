"""Scenes shared with tests/integration: the full-system stack and a live database with backend containers."""

from tests.integration.test_full_system import health, system  # noqa: F401 - fixtures used by name
from tests.integration.test_restore import live  # noqa: F401
