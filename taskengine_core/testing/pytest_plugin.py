"""The pytest fixtures of the testing kit (entry point ``pytest11``: loaded by every pytest run
in an environment where taskengine-core is installed, so importing this module stays cheap)."""

from __future__ import annotations

import pytest


@pytest.fixture
def taskengine_plugins() -> list:
    """Plugin modules (or objects with hook implementations) to load besides the installed
    ones. Override in ``conftest.py``: ``return [my_plugin_module]``."""
    return []


@pytest.fixture
def taskengine(tmp_path, monkeypatch, taskengine_plugins):
    """An engine on a temporary database with the plugins under test; stopped afterwards."""
    from taskengine_core.testing.harness import Harness

    home = tmp_path / "taskengine-home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("TASKENGINE_HOME", str(home))
    monkeypatch.setenv("TASKENGINE_DB", str(home / "taskengine.db"))
    harness = Harness(home / "taskengine.db", plugins=taskengine_plugins)
    yield harness
    harness.close()


@pytest.fixture
def smtp_receiver():
    """A local SMTP server; ``.settings`` is a ``settings.email`` section that sends to it."""
    from taskengine_core.testing.receivers import SmtpReceiver

    receiver = SmtpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http_receiver():
    """A local HTTP server recording requests; ``.url`` is its address."""
    from taskengine_core.testing.receivers import HttpReceiver

    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()
