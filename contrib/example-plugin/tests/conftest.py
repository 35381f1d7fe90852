"""The plugin under test, for the ``taskengine`` fixture of taskengine's testing kit (a pytest
plugin installed with taskengine-core)."""

import pytest

import taskengine_file_log


@pytest.fixture
def taskengine_plugins():
    return [taskengine_file_log]
