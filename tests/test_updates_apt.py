"""updates.* with the apt source, against a local repository and an isolated apt: what is
pending, the events, and the specific failures (unreachable, lock held, no space). The
machine's own apt and dpkg state never changes."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading

import pytest

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError
from taskengine_core.plugin_state import PluginState
from taskengine_core.store import Store
from taskengine_updates.action import check_updates, download_updates, install_updates
from tests.test_updates_support import apt_repo, needs_apt, system_apt_snapshot  # noqa: F401

pytestmark = needs_apt


class Emitted(list):
    def __call__(self, type, data=None, **kwargs):  # noqa: A002
        self.append((type, data, kwargs.get("source")))
        return f"ev-{len(self)}"


@pytest.fixture
def context(db_path):
    store = Store(db_path)

    def make(settings: dict | None = None, timeout: float | None = 120) -> ActionContext:
        return ActionContext(run_id="run-1", task="t", settings=settings or {}, timeout=timeout,
                             emit=Emitted(), state=PluginState(lambda: store, "actions:updates"))

    yield make
    store.close()


@pytest.fixture
def repo(apt_repo):
    return apt_repo({"te-demo": "1.0", "te-other": "2.0", "te-kept": "3.0"},
                    {"te-demo": ["1.0", "1.1"], "te-other": ["2.0", "2.1"], "te-kept": ["3.0"]})


def apt(repo) -> dict:
    return {"apt": {"config": str(repo.config)}}


def test_check_lists_pending_updates_and_changes_nothing_on_the_machine(repo, context):
    before = system_apt_snapshot()
    ctx = context(apt(repo))
    out = check_updates({"source": "apt"}, ctx)
    assert [(p["name"], p["installed"], p["candidate"]) for p in out["packages"]] == [
        ("te-demo", "1.0", "1.1"), ("te-other", "2.0", "2.1")]
    sizes = {p["name"]: p["size"] for p in out["packages"]}
    assert sizes == {"te-demo": (repo.pool / "te-demo_1.1_all.deb").stat().st_size,
                     "te-other": (repo.pool / "te-other_2.1_all.deb").stat().st_size}
    assert out["count"] == 2 and out["changed"] is True
    [(type_, data, source)] = ctx.emit
    assert type_ == "update.available" and source == "updates"
    assert data == {"source": "apt", "packages": out["packages"], "count": 2}
    assert system_apt_snapshot() == before


def test_check_emits_only_when_the_pending_set_changes(repo, context):
    first = context(apt(repo))
    check_updates({"source": "apt"}, first)
    again = context(apt(repo))
    out = check_updates({"source": "apt"}, again)
    assert out["count"] == 2 and out["changed"] is False and again.emit == []
    repo.add("te-demo", "1.2")
    repo.publish()
    later = context(apt(repo))
    out = check_updates({"source": "apt"}, later)
    assert out["changed"] is True
    [(_, data, _)] = later.emit
    assert ("te-demo", "1.2") in [(p["name"], p["candidate"]) for p in data["packages"]]


def test_download_fetches_without_installing(repo, context):
    before = system_apt_snapshot()
    check_updates({"source": "apt"}, context(apt(repo)))
    ctx = context(apt(repo))
    out = download_updates({"source": "apt"}, ctx)
    assert out["count"] == 2
    assert sorted(p.name for p in repo.archives.glob("*.deb")) == [
        "te-demo_1.1_all.deb", "te-other_2.1_all.deb"]
    assert repo.installed_version("te-demo") == "1.0"
    [(type_, data, _)] = ctx.emit
    assert type_ == "update.downloaded" and data["count"] == 2
    assert system_apt_snapshot() == before


def test_install_upgrades_and_emits_update_completed(repo, context):
    before = system_apt_snapshot()
    check_updates({"source": "apt"}, context(apt(repo)))
    ctx = context(apt(repo))
    out = install_updates({"source": "apt"}, ctx)
    assert out["result"] == "succeeded"
    assert repo.installed_version("te-demo") == "1.1" and repo.installed_version("te-other") == "2.1"
    assert (repo.root / "usr/share/te-test/te-demo.txt").read_text() == "te-demo 1.1\n"
    assert "Upgrade: " in repo.history.read_text()  # apt's own history, in the test's log dir
    [(type_, data, _)] = ctx.emit
    assert type_ == "update.completed"
    assert data["result"] == "succeeded" and data["started"] <= data["finished"]
    assert [(p["name"], p["installed"], p["candidate"]) for p in data["packages"]] == [
        ("te-demo", "1.0", "1.1"), ("te-other", "2.0", "2.1")]
    # nothing left: a second install does nothing and says so
    again = context(apt(repo))
    assert install_updates({"source": "apt"}, again)["result"] == "nothing to install"
    assert again.emit == []
    assert system_apt_snapshot() == before


def test_dist_upgrade_is_an_option(apt_repo, context):
    repo = apt_repo({"te-demo": "1.0"}, {"te-demo": ["1.0", "1.1"]})
    out = check_updates({"source": "apt", "upgrade": "dist-upgrade"}, context(apt(repo)))
    assert [p["candidate"] for p in out["packages"]] == ["1.1"]


def test_unreachable_repository_fails_naming_it(repo, context):
    repo.stop()  # nothing listens there any more
    with pytest.raises(ActionError) as err:
        check_updates({"source": "apt"}, context(apt(repo)))
    message = str(err.value)
    assert message.startswith(f"apt: repository unreachable: {repo.server.url}")
    assert "Connection refused" in message and "not refreshed" in message
    assert err.value.retryable is True


def hold(path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_held_lists_lock_fails_check_as_retryable(repo, context):
    fd = hold(repo.lists_lock)
    try:
        with pytest.raises(ActionError) as err:
            check_updates({"source": "apt"}, context(apt(repo)))
    finally:
        os.close(fd)
    assert str(err.value).startswith(f"apt: the lock {repo.lists_lock} is held by process "
                                     f"{os.getpid()}")
    assert "another apt or dpkg is running" in str(err.value) and err.value.retryable


def test_a_held_dpkg_lock_fails_install_and_reports_the_failure(repo, context):
    check_updates({"source": "apt"}, context(apt(repo)))
    fd = hold(repo.dpkg_lock)
    ctx = context(apt(repo))
    try:
        with pytest.raises(ActionError) as err:
            install_updates({"source": "apt"}, ctx)
    finally:
        os.close(fd)
    assert f"the lock {repo.dpkg_lock} is held" in str(err.value) and err.value.retryable
    [(type_, data, _)] = ctx.emit
    assert type_ == "update.completed" and data["result"] == "failed"
    assert "is held by process" in data["error"]
    assert repo.installed_version("te-demo") == "1.0"


def test_the_retry_policy_retries_a_held_lock(repo, applied, db_path):
    from taskengine_core.engine import Engine

    applied(f"""
        settings:
          updates: {{apt: {{config: "{repo.config}"}}}}
        tasks:
          check: {{action: updates.check, with: {{source: apt}}, retry: {{attempts: 5, backoff: 0.5, jitter: false}}}}
    """)
    fd = hold(repo.lists_lock)
    engine = Engine(db_path)
    engine.executor.start()
    run_id = engine.queue_run("check")
    released = threading.Timer(1.0, os.close, (fd,))
    released.start()
    try:
        assert engine.execute(run_id, timeout=60) == "succeeded"
    finally:
        released.join()
        engine.executor.stop(0)
    rows = engine.store.query("SELECT outcome, error FROM attempts WHERE run_id = ? ORDER BY number",
                              (run_id,))
    assert rows[0]["outcome"] != "succeeded" and "is held by process" in rows[0]["error"]
    assert rows[-1]["outcome"] == "succeeded"


def test_no_space_left_is_named(apt_repo, context, tmp_path):
    repo = apt_repo({"te-big": "1.0"}, {"te-big": ["1.0", "1.1"]}, payload=512 * 1024)
    check_updates({"source": "apt"}, context(apt(repo)))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs",
                              str(repo.archives)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        (repo.archives / "partial").mkdir()
        with pytest.raises(ActionError) as err:
            download_updates({"source": "apt"}, context(apt(repo)))
    finally:
        subprocess.run(["umount", str(repo.archives)], check=True)
    assert str(err.value).startswith(f"apt: no space left in {repo.archives}")
    assert err.value.retryable is False


def test_a_missing_config_file_is_named(context, tmp_path):
    with pytest.raises(ActionError, match=r"apt: the configuration file '.*nope.conf' does not exist"):
        check_updates({"source": "apt", "config": str(tmp_path / "nope.conf")}, context())


def test_options_of_another_source_are_refused(context):
    with pytest.raises(ActionError, match="index is not an option of source 'apt'"):
        check_updates({"source": "apt", "index": "https://pypi.org/simple/"}, context())


@pytest.mark.parametrize("text, expected, retryable", [
    ("E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission denied)\n"
     "E: Unable to lock directory /var/lib/apt/lists/\n",
     "apt: permission denied running apt-get -q update: apt needs root", False),
    ("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 "
     "(unattended-upgr)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), "
     "is another process using it?\n",
     "apt: the lock /var/lib/dpkg/lock-frontend is held by process 4242 (unattended-upgr)", True),
    ("E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another "
     "process using it?\n", "apt: cannot take the lock /var/lib/dpkg/lock-frontend", True),
    ("E: You don't have enough free space in /var/cache/apt/archives/.\n",
     "apt: no space left in /var/cache/apt/archives/: free space there", False),
    ("E: Write error - write (28: No space left on device)\n", "apt: no space left: free", False),
    ("E: Failed to fetch http://deb.example.com/dists/x/InRelease  Temporary failure resolving "
     "'deb.example.com'\nE: Some index files failed to download.\n",
     "apt: repository unreachable: http://deb.example.com/dists/x/InRelease: Temporary failure "
     "resolving 'deb.example.com'", True),
    ("E: Unable to locate package nope\n",
     "apt: apt-get -q update exited with code 100: Unable to locate package nope", False),
])
def test_apt_messages_are_told_apart(text, expected, retryable):
    from taskengine_updates.apt import failure

    error = failure("apt-get -q update", 100, text)
    assert str(error).startswith(expected) and error.retryable is retryable
