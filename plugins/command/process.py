"""Run one child process in its own process group with bounded output, a deadline and a cancel flag.

The child runs with ``start_new_session=True``, so it leads a new process group and everything it
starts (grandchildren included) can be signalled at once. Output is read through non-blocking
pipes in one ``selectors`` loop on the calling thread: no helper threads, nothing can deadlock on
a full pipe, and each stream keeps only its last ``max_output`` bytes while the rest is drained
and dropped. The leader is checked with ``waitid(WNOWAIT)`` and reaped only at the very end, so
its pid (= the group id) cannot be reused while we may still signal the group.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of the process group
LINGER = 1.0  # after the command exits, how long leftovers may keep its stdout/stderr open
POLL = 0.05  # how often the deadline, the cancel flag and the leader are checked
CHUNK = 64 * 1024


class TailBuffer:
    """Keeps the last ``limit`` bytes fed to it and counts what it dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        data = bytes(self.data)
        if not self.dropped:
            return data.decode("utf-8", errors="replace")
        # the cut may have split a UTF-8 sequence: skip its orphaned continuation bytes
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
            skip += 1
        marker = f"[... {self.dropped + skip} bytes truncated ...]\n"
        return marker + data[skip:].decode("utf-8", errors="replace")


@dataclass
class Outcome:
    """What happened: ``ended`` is ``exited``, ``timeout`` or ``cancelled``."""

    exit_code: int
    stdout: TailBuffer
    stderr: TailBuffer
    duration: float
    ended: str
    killed_leftovers: bool = False


def run_process(
    argv: list[str],
    *,
    env: dict[str, str] | None,
    cwd: str | None,
    stdin: bytes | None,
    limit: float | None,
    max_output: int,
    cancelled: threading.Event | None = None,
) -> Outcome:
    """Run ``argv`` (no shell) until it exits, ``limit`` seconds pass or ``cancelled`` is set.

    Raises what :class:`subprocess.Popen` raises when the program cannot start.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        bufsize=0,
    )
    pump = _Pump(proc, stdin or b"", max_output)
    try:
        ended, leftovers = pump.run(cancelled, None if limit is None else start + limit)
        if ended != "exited" or leftovers:
            pump.stop_group()
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        raise
    finally:
        pump.close()
        proc.wait()
    return Outcome(proc.returncode, pump.out, pump.err, time.monotonic() - start, ended,
                   killed_leftovers=ended == "exited" and leftovers)


class _Pump:
    def __init__(self, proc: subprocess.Popen, stdin: bytes, max_output: int) -> None:
        self.proc = proc
        self.out, self.err = TailBuffer(max_output), TailBuffer(max_output)
        self.sel = selectors.DefaultSelector()
        self.files = {}
        for f, buf in ((proc.stdout, self.out), (proc.stderr, self.err)):
            os.set_blocking(f.fileno(), False)
            self.sel.register(f.fileno(), selectors.EVENT_READ, buf)
            self.files[f.fileno()] = f
        self.pending = memoryview(stdin)
        self.stdin_fd = None
        if proc.stdin is not None:
            self.stdin_fd = proc.stdin.fileno()
            os.set_blocking(proc.stdin.fileno(), False)
            self.sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, None)
            self.files[proc.stdin.fileno()] = proc.stdin

    def run(self, cancelled: threading.Event | None, deadline: float | None) -> tuple[str, bool]:
        """Pump until the leader exits and its pipes close; return (how it ended, leftovers)."""
        exited_at = None
        while True:
            now = time.monotonic()
            if cancelled is not None and cancelled.is_set():
                return "cancelled", False
            if deadline is not None and now >= deadline:
                return "timeout", False
            if exited_at is None and _has_exited(self.proc.pid):
                exited_at = now
            if exited_at is not None:
                if not self._reading():
                    return "exited", False
                if now - exited_at >= LINGER:  # its children still hold the pipes open
                    return "exited", True
            wait = POLL if deadline is None else max(0.0, min(POLL, deadline - now))
            self.step(wait)

    def stop_group(self) -> None:
        """SIGTERM the group, keep draining for KILL_GRACE, then SIGKILL whatever is left."""
        self._close_stdin()
        _signal_group(self.proc.pid, signal.SIGTERM)
        until = time.monotonic() + KILL_GRACE
        while time.monotonic() < until and (self._reading() or not _has_exited(self.proc.pid)):
            self.step(POLL)
        _signal_group(self.proc.pid, signal.SIGKILL)
        # pipes held by a process that escaped the group must not keep us here
        until = time.monotonic() + 1.0
        while self._reading() and time.monotonic() < until:
            self.step(POLL)

    def step(self, wait: float) -> None:
        if not self.sel.get_map():
            time.sleep(wait)
            return
        for key, _ in self.sel.select(wait):
            if key.data is None:
                self._write(key.fd)
            else:
                self._read(key.fd, key.data)

    def close(self) -> None:
        for fd in list(self.files):
            self._forget(fd)
        self.sel.close()

    def _reading(self) -> bool:
        return any(key.data is not None for key in self.sel.get_map().values())

    def _read(self, fd: int, buf: TailBuffer) -> None:
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            buf.feed(chunk)
        else:
            self._forget(fd)

    def _write(self, fd: int) -> None:
        try:
            written = os.write(fd, self.pending[:CHUNK])
        except BlockingIOError:
            return
        except OSError:  # the child closed its stdin (EPIPE): it does not want the rest
            written = len(self.pending)
        self.pending = self.pending[written:]
        if not self.pending:
            self._forget(fd)

    def _close_stdin(self) -> None:
        if self.stdin_fd is not None:
            self._forget(self.stdin_fd)

    def _forget(self, fd: int) -> None:
        f = self.files.pop(fd, None)
        if f is None:
            return
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        try:
            f.close()
        except OSError:
            pass


def _has_exited(pid: int) -> bool:
    """Whether the leader has exited, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
