"""How a plugin process is started (tests/test_plugin_processes.py has the entries these
children run)."""

from __future__ import annotations

import sys

import pytest

from taskengine_core import plugin_processes
from tests.test_plugin_processes import entries  # noqa: F401 (fixture)
from tests.test_webhook_support import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")


def test_modules_in_the_engines_working_directory_are_not_imported_by_the_child(
        entries, tmp_path, monkeypatch):
    """``python -m`` puts the working directory first on the child's import path: an engine
    started from a directory holding a ``json.py`` (a script of the operator's, or one that
    anyone could write to /tmp) ran that file in the child instead of the standard library's
    module, as the engine's user. The engine itself (a console script) never imports from it."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    marker = tmp_path / "shadow-ran"
    (workdir / "json.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                      "raise ImportError('not the json module')\n")
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(plugin_processes, "FIRST_PAUSE", 60.0)  # no second child in the test
    child = entries("recorder")
    wait_until(lambda: entries.notes() or child.last_exit is not None, timeout=20,
               what="the child to start or exit")
    assert not marker.exists()
    assert entries.notes() == [f"started {child.pid} deliveries=True settings=[]"]


def test_a_relative_database_path_still_names_the_engines_database(entries, tmp_path, monkeypatch):
    """The child runs in the engine's working directory, so a relative path is the same file."""
    from taskengine_core.plugin_processes import PluginProcess
    from taskengine_core.store import open_store

    monkeypatch.chdir(tmp_path)
    open_store("relative.db").close()
    child = PluginProcess("te_child_entries:recorder", name="relative", database="relative.db")
    child.start()
    try:
        wait_until(lambda: entries.notes(), timeout=20, what="the child to start")
        assert entries.notes() == [f"started {child.pid} deliveries=True settings=[]"]
    finally:
        child.stop()
