"""The built-in bundles on real log lines (OpenSSH's auth.c, shadow-utils, pam_unix formats),
with and without the syslog prefix, and on lines an attacker shaped."""

from __future__ import annotations

import json

import pytest

from taskengine_logwatch.patterns import GroupNames
from taskengine_logwatch.rules import LineMatcher

SSHD = LineMatcher({"patterns": ["sshd"]})
PREFIXES = ["", "sshd[42]: ", "Dec  4 13:30:23 host sshd[42]: ", "Dec 14 03:00:01 host sshd-session[42]: ",
            "2026-12-04T13:30:23.123456+01:00 host sshd-session[42]: "]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_sshd_login_with_and_without_syslog_prefix(prefix):
    type_, data = SSHD.match(prefix + "Accepted publickey for alice from 127.0.0.1 port 47374 ssh2: "
                             "ED25519 SHA256:XmxVs5KwQ1b2c3")
    assert type_ == "user.login"
    assert {k: data[k] for k in ("user", "host", "port", "method", "key_type", "fingerprint")} == {
        "user": "alice", "host": "127.0.0.1", "port": 47374, "method": "publickey",
        "key_type": "ED25519", "fingerprint": "SHA256:XmxVs5KwQ1b2c3"}


@pytest.mark.parametrize("line,expected", [
    ("Accepted password for bob from 2001:db8::1 port 22 ssh2", ("user.login", "bob", "2001:db8::1")),
    ("Failed password for bob from 203.0.113.9 port 50000 ssh2", ("user.login_failed", "bob", "203.0.113.9")),
    ("Failed password for invalid user admin from 203.0.113.9 port 50000 ssh2",
     ("user.login_failed", "admin", "203.0.113.9")),
    ("Invalid user oracle from 203.0.113.9 port 50000", ("user.login_failed", "oracle", "203.0.113.9")),
    ("Disconnected from user alice 127.0.0.1 port 47374", ("user.logout", "alice", "127.0.0.1")),
])
def test_sshd_messages(line, expected):
    type_, data = SSHD.match("Dec  4 13:30:23 host sshd[7]: " + line)
    assert (type_, data["user"], data["host"]) == expected


def test_failed_attempts_say_why():
    _, data = SSHD.match("sshd[1]: Failed password for invalid user admin from 1.2.3.4 port 5 ssh2")
    assert data["reason"] == "invalid user" and "invalid" not in data
    _, data = SSHD.match("sshd[1]: Failed publickey for bob from 1.2.3.4 port 5 ssh2: RSA SHA256:abc")
    assert data["reason"] == "failed publickey"


@pytest.mark.parametrize("prefix", ["", "Dec  4 13:30:24 host sshd[912]: "])
def test_the_injection_line_is_a_failed_login_never_alice(prefix):
    # from a login attempt as the user "x Accepted publickey for alice from 198.51.100.1 port 1 ssh2"
    line = (prefix + "Invalid user x Accepted publickey for alice from 198.51.100.1 port 1 ssh2 "
            "from 127.0.0.1 port 35382")
    type_, data = SSHD.match(line)
    assert type_ == "user.login_failed"
    assert data["user"] == "x Accepted publickey for alice from 198.51.100.1 port 1 ssh2"
    assert (data["host"], data["port"]) == ("127.0.0.1", 35382)


@pytest.mark.parametrize("line", [
    # the same name in a failed password attempt: host and port still come from sshd's end
    "Dec  4 13:30:24 host sshd[9]: Failed password for invalid user x Accepted publickey for alice "
    "from 198.51.100.1 port 1 ssh2 from 127.0.0.1 port 35382 ssh2",
    # a forged line from another program, or another program's message quoting one
    "Dec  4 13:30:24 host logger[9]: Accepted publickey for alice from 198.51.100.1 port 1 ssh2",
    "Dec  4 13:30:24 host cron[9]: sshd[1]: Accepted publickey for alice from 198.51.100.1 port 1 ssh2",
    "Dec  4 13:30:24 host sshd[9]: Connection from x Accepted publickey for alice from 1.2.3.4 port 1 ssh2",
    "Accepted publickey for alice from 198.51.100.1 port 1 ssh2 trailing",
    "Accepted publickey for alice from 198.51.100.1 port 1 ssh2\nx",
])
def test_no_crafted_line_reads_as_alice_logging_in(line):
    found = SSHD.match(line)
    assert found is None or found[0] != "user.login"


def test_useradd_lines(tmp_path):
    group = tmp_path / "group"
    group.write_text("root:x:0:\ntemporary:x:1500:\nalice:x:1000:\n")
    matcher = LineMatcher({"patterns": ["useradd"]}, GroupNames(str(group)))
    prefix = "Dec  4 13:30:23 host useradd[77]: "
    assert matcher.match(prefix + "new group: name=tmp1, GID=1501") == (
        "group.created", {"group": "tmp1", "gid": 1501, "program": "useradd", "pid": 77,
                          "hostname": "host", "time": "Dec  4 13:30:23"})
    type_, data = matcher.match(prefix + "new user: name=tmp1, UID=1501, GID=1500, home=/home/tmp1, "
                                "shell=/bin/sh, from=/dev/pts/0")
    assert type_ == "user.created"
    assert {k: data[k] for k in ("user", "uid", "gid", "group", "home", "shell")} == {
        "user": "tmp1", "uid": 1501, "gid": 1500, "group": "temporary", "home": "/home/tmp1",
        "shell": "/bin/sh"}
    _, data = matcher.match(prefix + "new user: name=tmp2, UID=1502, GID=4242, home=/home/tmp2, shell=/bin/sh")
    assert "group" not in data and data["gid"] == 4242  # a GID the group file does not know
    assert matcher.match(prefix + "add 'tmp1' to group 'docker'")[0] == "user.group_added"
    assert matcher.match("Dec  4 13:30:23 host userdel[78]: delete user 'tmp1'")[1]["user"] == "tmp1"
    assert matcher.match("Dec  4 13:30:23 host logger[1]: new user: name=x, UID=1, GID=1, home=/, shell=/") is None


def test_pam_sessions():
    pam = LineMatcher({"patterns": ["pam"]})
    type_, data = pam.match("Dec  4 13:30:23 host sshd[5]: pam_unix(sshd:session): session opened for "
                            "user alice(uid=1000) by (uid=0)")
    assert type_ == "session.opened"
    assert (data["user"], data["uid"], data["service"], data["by_uid"]) == ("alice", 1000, "sshd", 0)
    type_, data = pam.match("Dec  4 13:30:23 host su: pam_unix(su:session): session opened for user "
                            "root by alice(uid=1000)")
    assert (type_, data["user"], data["by"], data["by_uid"]) == ("session.opened", "root", "alice", 1000)
    type_, data = pam.match("2026-12-04T13:30:23+00:00 host sshd[5]: pam_unix(sshd:session): session "
                            "closed for user alice")
    assert (type_, data["user"]) == ("session.closed", "alice")


def test_user_rules_match_the_whole_line_and_add_fixed_data():
    matcher = LineMatcher({"rules": [{"match": r"(?P<time>\S+) ERROR sync (?P<sync>\S+) failed: (?P<error>.*)",
                                      "event": "sync.failed", "data": {"severity": "high"}}]})
    assert matcher.match("2026-12-04T10:00:00 ERROR sync nightly failed: disk full") == (
        "sync.failed", {"severity": "high", "time": "2026-12-04T10:00:00", "sync": "nightly",
                        "error": "disk full"})
    assert matcher.match("prefix 2026-12-04T10:00:00 ERROR sync nightly failed: x") is None
    only = LineMatcher({"rules": [{"match": "ERROR (?P<what>\\w+)", "event": "e"}]})
    assert only.match("ERROR disk") is not None
    assert only.match("x ERROR disk") is None and only.match("ERROR disk now") is None


from hypothesis import given, settings, strategies as st  # noqa: E402

# what an attacker controls: the user name, any printable text (sshd logs it verbatim)
NAMES = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cs",)),
                min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(name=NAMES, fake=st.sampled_from([
    "Accepted publickey for alice from 198.51.100.1 port 1 ssh2",
    "Accepted password for alice from 198.51.100.1 port 1 ssh2: RSA SHA256:abc",
    " from 198.51.100.1 port 1 ssh2", "Disconnected from user alice 1.2.3.4 port 1"]))
def test_an_attacker_chosen_name_never_makes_a_login_and_is_read_whole(name, fake):
    for user in (name, name + " " + fake, fake + " " + name):
        for line, kind in ((f"Invalid user {user} from 127.0.0.1 port 35382", "invalid"),
                           (f"Failed password for invalid user {user} from 127.0.0.1 port 35382 ssh2", "failed")):
            type_, data = SSHD.match("Dec  4 13:30:24 host sshd[912]: " + line)
            assert type_ == "user.login_failed"
            assert data["user"] == user and data["host"] == "127.0.0.1" and data["port"] == 35382


def test_the_schema_names_every_bundle_and_no_other():
    """The settings schema lists the bundle names without importing the bundles (RE2): the two
    lists must stay the same."""
    from taskengine_logwatch.patterns import BUNDLES
    from taskengine_logwatch.schema import BUNDLE_NAMES, SETTINGS_SCHEMA

    assert sorted(BUNDLE_NAMES) == sorted(BUNDLES)
    assert '"enum": ["pam", "sshd", "useradd"]' in json.dumps(SETTINGS_SCHEMA)
