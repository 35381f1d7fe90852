"""Following systemd's journal through ``journalctl -f -o json --after-cursor=C``.

Why a ``journalctl`` subprocess and not a library: ``systemd-python`` has no wheel (it builds
against ``libsystemd-dev``), and the wheels that exist wrap the same C library; ``journalctl``
is on every systemd machine, reads local, remote (``-D DIR``) and rotated journals alike, and
its JSON output and cursors are a stable interface. The cursor of the last entry handled is
stored in the source's durable state after its events are committed; a restart resumes after
it (``--after-cursor``), so nothing is lost or read twice.

Entries are matched by **trusted fields**: journald itself sets the fields starting with ``_``
(``_SYSTEMD_UNIT``, ``_COMM``, ``_PID``, ``_UID``) from the sending process, and drops such
fields when a client sends them. A line in ``/var/log/auth.log`` says ``sshd[123]:`` because
the sender wrote that (``logger -t 'sshd[123]'`` does it for any user); an entry whose
``_COMM`` is ``sshd`` came from an sshd process. So the built-in bundles see the entry as
``<_COMM>[<_PID>]: <MESSAGE>``, never as the sender's ``SYSLOG_IDENTIFIER``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import select
import subprocess
import tempfile

from .patterns import GroupNames
from .rules import LineMatcher
from .schema import DEFAULT_MAX_LINE

log = logging.getLogger("taskengine.logwatch")
STATE_KEY = "journal"
READ_BYTES = 1 << 20


class JournalWatch:
    path = "journal"

    def __init__(self, spec: dict, group_names: GroupNames) -> None:
        self.spec = spec
        self.bundles = LineMatcher({"patterns": spec.get("patterns") or ()}, group_names)
        self.rules = LineMatcher({"rules": spec.get("rules") or ()})
        self.max_line = int(spec.get("max_line") or DEFAULT_MAX_LINE)
        self.proc: subprocess.Popen | None = None
        self.stderr = None
        self.buffer = b""

    @property
    def pipe(self) -> int | None:
        """journalctl's output, for the source to wait on."""
        return self.proc.stdout.fileno() if self.proc is not None else None

    # -- the journalctl process ------------------------------------------------------------------

    def _base_args(self) -> list[str]:
        args = [self.spec.get("journalctl") or "journalctl", "--no-pager", "-o", "json"]
        if self.spec.get("directory"):
            args += ["-D", self.spec["directory"]]
        for field, values in (self.spec.get("match") or {}).items():
            for value in [values] if isinstance(values, str) else values:
                args.append(f"{field}={value}")  # FIELD=VALUE: never read as an option
        return args

    def _start(self, ctx) -> None:
        state = ctx.state.get(STATE_KEY)
        if state is None:
            state = {"cursor": None if self.spec.get("from") == "start" else self._tail_cursor()}
            ctx.state.set(STATE_KEY, state)
        args = self._base_args() + ["--follow"]
        args += [f"--after-cursor={state['cursor']}"] if state.get("cursor") else ["--no-tail"]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, start_new_session=True)
        self.buffer = b""

    def _tail_cursor(self) -> str | None:
        """The newest entry's cursor: where "from the end" starts (None: the journal is empty)."""
        done = subprocess.run(self._base_args() + ["-n", "1"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"journalctl failed: {done.stderr.decode('utf-8', 'replace').strip()}")
        last = None
        for raw in done.stdout.splitlines():
            if raw.strip():
                last = json.loads(raw).get("__CURSOR")
        return last

    # -- one batch -------------------------------------------------------------------------------

    def step(self, ctx) -> bool:
        if self.proc is None:
            self._start(ctx)
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], 0)
        if not ready:
            return False
        chunk = os.read(fd, READ_BYTES)
        if not chunk:
            self.proc.wait(timeout=10)
            self.stderr.seek(0)
            message = self.stderr.read().decode("utf-8", "replace").strip()[-500:]
            raise RuntimeError(f"journalctl ended (exit {self.proc.returncode}): {message or 'no message'}")
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        events, cursor = [], None
        for raw in complete:
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                log.warning("logwatch: journal: journalctl wrote a line that is not JSON; skipped")
                continue
            cursor = entry.get("__CURSOR") or cursor
            found = self._match(entry)
            if found is not None:
                events.append(found)
        if events:
            from .source import _emit

            _emit(ctx, events, "journal")
        if cursor is not None:
            ctx.state.set(STATE_KEY, {"cursor": cursor})
        return True

    def _match(self, entry: dict) -> dict | None:
        message = _text(entry.get("MESSAGE"))[: self.max_line]
        comm, pid = _text(entry.get("_COMM")), _text(entry.get("_PID"))
        found = None
        if self.bundles.bundles and comm:
            found = self.bundles.match(f"{comm}[{pid}]: {message}" if pid else f"{comm}: {message}")
        if found is None:
            found = self.rules.match(message)
        if found is None:
            return None
        type_, data = found
        data.update(source="journal", line=message)
        for field, key in (("_SYSTEMD_UNIT", "unit"), ("_HOSTNAME", "hostname"), ("_UID", "sender_uid")):
            if field in entry and key not in data:
                data[key] = _text(entry[field])
        cursor = entry.get("__CURSOR", "")
        return {"type": type_, "data": data,
                "id": "journal:" + hashlib.sha256(cursor.encode()).hexdigest()[:32]}

    def reset(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.proc = None
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


def _text(value) -> str:
    """A journal field as text: journalctl writes fields that are not UTF-8 as byte arrays."""
    if value is None:
        return ""
    if isinstance(value, list):
        try:
            return bytes(value).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return ""
    return str(value)
