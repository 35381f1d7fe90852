"""The PostgreSQL server of the tests is :class:`taskengine_core.testing.postgres.PostgresServer`,
started once per session (see ``conftest.py``). Without PostgreSQL installed the tests that need
it are skipped, unless ``TASKENGINE_REQUIRE_POSTGRES=1`` (set by ``scripts/test``), which makes
that a failure."""

from __future__ import annotations

import os

import pytest

from taskengine_core.testing.postgres import PostgresServer

__all__ = ["PostgresServer", "unavailable"]

REQUIRE_ENV = "TASKENGINE_REQUIRE_POSTGRES"


def unavailable(reason: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_ENV}=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")
