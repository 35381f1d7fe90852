"""The built-in pattern bundles: ``sshd``, ``useradd`` and ``pam``.

Each bundle is an *envelope* (the optional syslog prefix and the program's name, both anchored
at the start of the line) and a list of message patterns, each matched against the whole rest
of the line. sshd writes attacker-chosen user names verbatim, spaces included: a name such as
``x Accepted publickey for alice from 198.51.100.1 port 1 ssh2`` shows up inside an
``Invalid user ...`` line. Because the message must match from its first character to its last
(``fullmatch``), and the program name must sit right after the prefix, such a line only ever
reads as the failed attempt it is.

Patterns are compiled with RE2 (:mod:`.engine`): matching takes time linear in the line's
length, so no line can stall the follower.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .engine import compile_regex

# rsyslog's traditional (``Dec  4 13:30:23``) and RFC 3339 (Debian's default since rsyslog 8,
# ``2026-12-04T13:30:23.123456+00:00``) time stamps, then the host name.
SYSLOG_PREFIX = (r"(?:(?P<time>[A-Z][a-z]{2} [ 0-9]?\d \d\d:\d\d:\d\d|"
                 r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) "
                 r"(?P<hostname>[^\s\[\]]+) )?")
HOST = r"(?P<host>[0-9A-Za-z.:%_-]+)"  # an address, or a name when sshd's UseDNS is on
PORT = r"(?P<port>\d{1,5})"


@dataclass(frozen=True)
class MessagePattern:
    event: str
    starts: str  # the literal the message starts with: a cheap test before the regex
    regex: str
    ints: tuple[str, ...] = ()
    fixed: dict = field(default_factory=dict)  # data added to every match
    derive: str = ""  # name of a function in DERIVE that finishes the data


@dataclass(frozen=True)
class Bundle:
    name: str
    description: str
    hints: tuple[str, ...]  # a line of interest contains one of these (a fast pre-filter)
    program: str  # regex of the program part, with its ": " separator
    program_optional: bool  # lines without prefix and program (sshd -E FILE writes those)
    messages: tuple[MessagePattern, ...]


def _failed_reason(data: dict) -> None:
    if data.pop("invalid", None):
        data["reason"] = "invalid user"
    else:
        data["reason"] = f"failed {data.get('method', 'attempt')}"


DERIVE = {"failed_reason": _failed_reason}

SSHD = Bundle(
    "sshd",
    "OpenSSH logins: user.login, user.login_failed, user.logout (sshd and sshd-session)",
    ("sshd",),
    r"(?P<program>sshd(?:-session)?)\[(?P<pid>\d+)\]: ",
    True,
    (
        MessagePattern(
            "user.login", "Accepted ",
            r"Accepted (?P<method>[\w/-]+) for (?P<user>\S+) from " + HOST + " port " + PORT
            + r" ssh2(?:: (?P<key_type>[\w-]+) (?P<fingerprint>SHA256:[A-Za-z0-9+/=]+)(?: .*)?)?",
            ints=("port",)),
        # (?P<user>.*) is greedy: with an attacker's " from ... port ..." inside the name, host
        # and port still come from the end of the line, where sshd wrote them.
        MessagePattern(
            "user.login_failed", "Failed ",
            r"Failed (?P<method>[\w/-]+) for (?P<invalid>invalid user )?(?P<user>.*) from " + HOST
            + " port " + PORT + r" ssh2(?:: .*)?",
            ints=("port",), derive="failed_reason"),
        MessagePattern(
            "user.login_failed", "Invalid user ",
            r"Invalid user (?P<user>.*) from " + HOST + " port " + PORT,
            ints=("port",), fixed={"reason": "invalid user"}),
        MessagePattern(
            "user.logout", "Disconnected from user ",
            r"Disconnected from user (?P<user>\S+) " + HOST + " port " + PORT,
            ints=("port",)),
    ),
)

USERADD = Bundle(
    "useradd",
    "shadow-utils: user.created, user.deleted, user.group_added, group.created",
    ("user", "group"),
    r"(?P<program>useradd|userdel|usermod|groupadd)\[(?P<pid>\d+)\]: ",
    False,
    (
        MessagePattern(
            "user.created", "new user: ",
            r"new user: name=(?P<user>[^,\s]+), UID=(?P<uid>\d+), GID=(?P<gid>\d+), "
            r"home=(?P<home>[^,]*), shell=(?P<shell>[^,]*)(?:, from=(?P<from>\S*))?",
            ints=("uid", "gid")),
        MessagePattern(
            "group.created", "new group: ",
            r"new group: name=(?P<group>[^,\s]+), GID=(?P<gid>\d+)", ints=("gid",)),
        MessagePattern(
            "user.group_added", "add '",
            r"add '(?P<user>[^'\s]+)' to group '(?P<group>[^'\s]+)'"),
        MessagePattern(
            "user.deleted", "delete user '",
            r"delete user '(?P<user>[^'\s]+)'"),
    ),
)

PAM = Bundle(
    "pam",
    "PAM sessions (pam_unix): session.opened, session.closed, any program",
    ("pam_unix(",),
    r"(?P<program>[\w./-]+)(?:\[(?P<pid>\d+)\])?: ",
    False,
    (
        MessagePattern(
            "session.opened", "pam_unix(",
            r"pam_unix\((?P<service>[\w.-]+):session\): session opened for user "
            r"(?P<user>[^\s(]+)(?:\(uid=(?P<uid>\d+)\))? by (?P<by>[^\s(]*)(?:\(uid=(?P<by_uid>\d+)\))?",
            ints=("uid", "by_uid")),
        MessagePattern(
            "session.closed", "pam_unix(",
            r"pam_unix\((?P<service>[\w.-]+):session\): session closed for user (?P<user>\S+)"),
    ),
)

BUNDLES = {b.name: b for b in (SSHD, USERADD, PAM)}
# the data fields each event of a bundle carries; a user rule that emits one of these types
# must capture the same fields, so rules written for the bundles' events work with it
EVENT_FIELDS = {
    "user.login": ("user", "host"),
    "user.login_failed": ("user", "host"),
    "user.logout": ("user",),
    "user.created": ("user",),
    "user.deleted": ("user",),
    "user.group_added": ("user", "group"),
    "group.created": ("group",),
    "session.opened": ("user",),
    "session.closed": ("user",),
}


class CompiledBundle:
    """A bundle ready to match: ``match(line)`` returns ``(event type, data)`` or ``None``.

    The envelope (time, host, program and pid at the start of the line) is matched with
    Python's ``re``: it is fixed, written here, and every part of it ends at a delimiter its
    character class excludes, so it cannot backtrack more than linearly. Message patterns,
    which take attacker-chosen text (``(?P<user>.*)``), are matched with RE2. Most lines of a
    busy log are settled by the envelope and a ``startswith``, without calling RE2 at all.
    """

    def __init__(self, bundle: Bundle, group_names: "GroupNames | None" = None) -> None:
        import re

        self.bundle = bundle
        # without the program part (sshd -E FILE) only the message can tell
        extra = tuple(m.starts for m in bundle.messages) if bundle.program_optional else ()
        self.hints = tuple(dict.fromkeys(bundle.hints + extra))
        self.hint_search = re.compile("|".join(re.escape(h) for h in self.hints)).search
        self.envelope = re.compile(SYSLOG_PREFIX + bundle.program)
        self.messages = [(m, compile_regex(m.regex)) for m in bundle.messages]
        self.group_names = group_names

    def match(self, line: str) -> tuple[str, dict] | None:
        if self.hint_search(line) is None:
            return None
        outer = self.envelope.match(line)
        if outer is None and not self.bundle.program_optional:
            return None
        message = line[outer.end():] if outer is not None else line
        for pattern, regex in self.messages:
            if not message.startswith(pattern.starts):
                continue
            found = regex.fullmatch(message)
            if found is None:
                continue
            data = {k: v for k, v in outer.groupdict().items() if v is not None} if outer else {}
            data.update(found)
            for key in pattern.ints + ("pid",):
                if key in data:
                    data[key] = int(data[key])
            data.update(pattern.fixed)
            if pattern.derive:
                DERIVE[pattern.derive](data)
            if pattern.event == "user.created" and self.group_names is not None:
                name = self.group_names.name_of(data["gid"])
                if name is not None:
                    data["group"] = name
            return pattern.event, data
        return None


class GroupNames:
    """Group names by GID, read from a group file (``/etc/group``) when it changes: the
    ``new user`` line of useradd names the primary group by number only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple | None = None
        self._names: dict[int, str] = {}

    def name_of(self, gid: int) -> str | None:
        import os

        try:
            st = os.stat(self.path)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            names: dict[int, str] = {}
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    for row in f:
                        parts = row.rstrip("\n").split(":")
                        if len(parts) >= 3 and parts[2].isdigit():
                            names.setdefault(int(parts[2]), parts[0])
            except OSError:
                return None
            self._names, self._stamp = names, stamp
        return self._names.get(gid)
