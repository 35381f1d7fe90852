"""taskengine's testing kit (a pytest plugin installed with taskengine-core) provides the
fixtures ``taskengine``, ``smtp_receiver`` and ``http_receiver``. This fixture tells it which
plugin is under test, so the tests work whether or not the package is installed."""

import pytest

import taskengine_myplugin


@pytest.fixture
def taskengine_plugins():
    return [taskengine_myplugin]
