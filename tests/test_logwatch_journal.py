"""The journal, without a running journald: `systemd-journal-remote` writes a journal file from
export-format text, and the source reads it with `journalctl -D DIR` by cursor."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from taskengine_core.engine import Engine
from tests.test_logwatch_engine import logwatch_events, wait_for, wait_started

REMOTE = shutil.which("systemd-journal-remote") or "/lib/systemd/systemd-journal-remote"
pytestmark = pytest.mark.skipif(
    not shutil.which("journalctl") or not shutil.which(REMOTE),
    reason="needs journalctl and systemd-journal-remote (Debian: systemd-journal-remote; scripts/test installs it)")

BOOT = "0123456789abcdef0123456789abcdef"


class Journal:
    def __init__(self, directory):
        self.directory = directory
        self.directory.mkdir()
        self.clock = 1796396000000000

    def write(self, *entries: dict) -> None:
        """Append entries (dicts of fields) to the journal file, as journald would."""
        text = ""
        for fields in entries:
            self.clock += 1000000
            text += (f"__REALTIME_TIMESTAMP={self.clock}\n__MONOTONIC_TIMESTAMP={self.clock - 1796390000000000}\n"
                     f"_BOOT_ID={BOOT}\n")
            text += "".join(f"{k}={v}\n" for k, v in fields.items()) + "\n"
        subprocess.run([REMOTE, f"--output={self.directory}/remote.journal", "-"], input=text.encode(),
                       check=True, capture_output=True)


def sshd(message, comm="sshd", unit="ssh.service", pid=100):
    return {"_SYSTEMD_UNIT": unit, "_COMM": comm, "_PID": pid, "SYSLOG_IDENTIFIER": "sshd", "MESSAGE": message}


def accepted(user, port=22):
    return f"Accepted publickey for {user} from 127.0.0.1 port {port} ssh2"


def start_engine(applied, db_path, journal, extra=""):
    applied(f"""
        settings:
          logwatch:
            poll: 0.05
            journal:
              directory: {journal.directory}
              match: {{_SYSTEMD_UNIT: ssh.service}}
              patterns: [sshd]
              {extra}
        """)
    engine = Engine(db_path)
    engine.start()
    wait_started(db_path, "journal")
    return engine


def test_journal_entries_by_trusted_fields_and_cursor_across_restarts(tmp_path, applied, db_path):
    journal = Journal(tmp_path / "journal")
    journal.write(sshd(accepted("old")))
    engine = start_engine(applied, db_path, journal)  # first start: from the end
    try:
        journal.write(
            sshd(accepted("alice", 1)),
            # a client cannot set _COMM: "logger -t sshd" inside the unit still says logger
            sshd(accepted("mallory", 2), comm="logger"),
            sshd(accepted("eve", 3), unit="cron.service"),  # not the unit we match
            sshd("Invalid user x Accepted publickey for alice from 198.51.100.1 port 1 ssh2 "
                 "from 127.0.0.1 port 35382"),
        )
        wait_for(lambda: len(logwatch_events(db_path)) >= 2)
    finally:
        engine.stop(grace=1)
    journal.write(sshd(accepted("bob", 4)))  # while stopped
    engine = Engine(db_path)
    engine.start()
    try:
        wait_for(lambda: len(logwatch_events(db_path)) >= 3)
        journal.write(sshd(accepted("carol", 5), comm="sshd-session"))
        wait_for(lambda: len(logwatch_events(db_path)) >= 4)
    finally:
        engine.stop(grace=1)
    events = logwatch_events(db_path)
    assert [(e["type"], e["data"]["user"]) for e in events] == [
        ("user.login", "alice"),
        ("user.login_failed", "x Accepted publickey for alice from 198.51.100.1 port 1 ssh2"),
        ("user.login", "bob"), ("user.login", "carol")]
    assert events[0]["data"]["source"] == "journal" and events[0]["data"]["unit"] == "ssh.service"
    assert events[0]["data"]["program"] == "sshd" and events[0]["data"]["pid"] == 100
    assert len({e["id"] for e in events}) == 4 and all(e["duplicate_of"] is None for e in events)


def test_from_start_reads_the_whole_journal_and_user_rules_see_the_message(tmp_path, applied, db_path):
    journal = Journal(tmp_path / "journal")
    journal.write(sshd(accepted("early")), sshd("Server listening on 0.0.0.0 port 22."))
    engine = start_engine(applied, db_path, journal,
                          extra="from: start\n              rules: [{match: 'Server listening on "
                                "(?P<address>\\S+) port (?P<port>\\d+)\\.', event: sshd.listening}]")
    try:
        wait_for(lambda: len(logwatch_events(db_path)) >= 2)
    finally:
        engine.stop(grace=1)
    events = logwatch_events(db_path)
    assert [(e["type"], e["data"].get("user") or e["data"].get("address")) for e in events] == [
        ("user.login", "early"), ("sshd.listening", "0.0.0.0")]


def test_a_journalctl_that_fails_is_retried_and_logged(tmp_path, applied, db_path, caplog):
    applied(f"""
        settings:
          logwatch:
            poll: 0.05
            journal: {{directory: {tmp_path}/missing, patterns: [sshd], journalctl: {tmp_path}/no-such-journalctl}}
        """)
    engine = Engine(db_path)
    with caplog.at_level("WARNING", logger="taskengine.logwatch"):
        engine.start()
        try:
            wait_for(lambda: "no-such-journalctl" in caplog.text)
        finally:
            engine.stop(grace=1)
    assert "retrying from the stored position" in caplog.text
