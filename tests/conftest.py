"""Shared by every test: the fixture plugins of tests/helpers/, and the DirectRunner speed-ups for the session.

A test requests ``bigquery_emulator``, ``scorer_store`` or ``scorer_server`` by name; nothing imports a fixture.
The constants and builders beside them are imported from ``tests.helpers.*`` like any other helper.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.helpers.bigquery", "tests.helpers.scorer", "tests.helpers.sample_run"]


@pytest.fixture(scope="session", autouse=True)
def local_speedups() -> bool:
    """``infra.local.speedups.apply()`` once, before any test: every pipeline of the session runs with the same
    DirectRunner, whichever test happens to run first (the local entry points apply them the same way)."""
    from infra.local import speedups

    return speedups.apply()
