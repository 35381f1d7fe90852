"""A plugin's background work in a process of its own, started and watched over by the engine.

One interpreter runs Python on one core at a time (the GIL), so work that keeps a core busy and
shares nothing in memory with the engine (the webhook dispatcher) goes faster in a child process
on another core. A plugin asks for one with ``engine.start_process(entry, name=...)`` from its
``engine_started`` hook (see ``docs/hooks.md``):

* The child (:mod:`taskengine_core.plugin_process_main`) imports ``entry`` ("module:function")
  and calls it with an :class:`~taskengine_core.context.EngineInfo` of its own on the same
  database: the delivery queue, ``emit`` into the inbox, secrets resolved and redacted as the
  engine does. ``entry`` returns an object with ``wake(hint)`` and ``stop()``.
* The database's path or URL (which may hold a password) reaches the child through its standard
  input, never its command line. The same pipe then carries wake-ups ("look now", with an
  optional hint), and its end is the stop: when the engine stops, or dies, the child reads EOF,
  stops its work and exits. The child ignores Ctrl-C (the engine decides when it stops) and
  stops the same way on SIGTERM (``systemctl stop`` signals every process of the unit, unless
  ``KillMode=mixed`` as in ``contrib/taskengine.service``: then only the engine, which stops it).
* A child that exits while the engine runs, or cannot be started, is started again after a
  pause (1 s, doubling up to 60 s, back to 1 s once a child has run for a minute), and the log
  says how it ended.
* Wake-ups never block the caller: they are coalesced and written by a thread of their own.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time

log = logging.getLogger("taskengine.processes")
FIRST_PAUSE = 1.0  # seconds before a child that exited is started again; doubles each time
LONGEST_PAUSE = 60.0
RAN_LONG_ENOUGH = 60.0  # a child that ran this long before it exited starts again at FIRST_PAUSE
STOP_GRACE = 10.0  # seconds a child gets to stop after its standard input closes, then SIGKILL
STEADY = 10.0  # a child started again counts as running once it has run this long (/healthz)


class PluginProcess:
    """One child process running ``entry`` on the engine's database (see the module's
    docstring). ``name`` appears in the child's log lines and the engine's."""

    def __init__(self, entry: str, *, name: str, database: str, listen: str | None = None,
                 grace: float = STOP_GRACE) -> None:
        if entry.count(":") != 1 or not all(entry.split(":")):
            raise ValueError(f"entry {entry!r}: expected 'module:function'")
        self.entry, self.name, self.grace = entry, name, grace
        self._header = {"entry": entry, "name": name, "database": database, "listen": listen,
                        "log_level": logging.getLogger().getEffectiveLevel()}
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._pipe = threading.Condition()  # guards _proc, _hints and _scan
        self._fd = threading.Lock()  # held while writing to a child's stdin, and to close it
        self._hints: set[str] = set()
        self._scan = False
        self.starts = 0  # how many children were started (1 + restarts)
        self.last_exit: int | None = None  # the exit code of the last child that ended
        # time.monotonic() since when no child has run steadily (one that exits soon after it
        # was started does not end that time): see down_for()
        self.down_since: float | None = None
        self.up_since: float | None = None  # time.monotonic() when the current child started
        self._watcher: threading.Thread | None = None
        self._writer: threading.Thread | None = None

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called (it is not started again then)."""
        return self._stopping.is_set()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def down_for(self) -> float | None:
        """Seconds since no child has been running steadily (for :data:`STEADY` seconds); None
        while one does. A child that exits each time soon after it is started stays down."""
        down, up = self.down_since, self.up_since
        if down is None:
            return None
        now = time.monotonic()
        if up is not None and up >= down and now - up >= STEADY and self.pid is not None:
            return None
        return now - down

    def start(self) -> None:
        try:
            self._spawn()
        except OSError as exc:  # out of memory, processes or descriptors: the watcher tries again
            self.down_since = time.monotonic()
            log.error("%s could not be started: %s; trying again in %gs", self.name, exc, FIRST_PAUSE)
        self._watcher = threading.Thread(target=self._watch, name=f"taskengine-{self.name}-watch",
                                         daemon=True)
        self._writer = threading.Thread(target=self._write, name=f"taskengine-{self.name}-wake",
                                        daemon=True)
        try:
            self._watcher.start()  # RuntimeError when the system gives no more threads
            self._writer.start()
        except RuntimeError:  # no child without its watcher: stopped, and the caller is told
            self.stop()
            raise

    def wake(self, hint: str | None = None) -> None:
        """Tell the child to look now (``hint``: what to look at, or everything); never blocks."""
        with self._pipe:
            if hint:
                self._hints.add(hint)
            else:
                self._scan = True
            self._pipe.notify()

    def ask_to_stop(self) -> None:
        """Close the child's standard input (it stops its work and exits), without waiting:
        several processes stop together when each is asked before any is waited for."""
        with self._pipe:
            if self._stopping.is_set():
                return
            self._stopping.set()
            self._pipe.notify()
            proc = self._proc
        self._close_stdin(proc)

    def stop(self) -> None:
        """Close the child's standard input; wait up to ``grace`` seconds, then kill it."""
        self.ask_to_stop()
        with self._pipe:
            proc = self._proc
        if proc is not None:
            try:
                proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not stop within %gs of being asked: killed",
                            self.name, proc.pid, self.grace)
                proc.kill()
                proc.wait()
        for thread in (self._watcher, self._writer):
            if thread is not None and thread.is_alive():  # not started when threads ran out
                thread.join(5)

    # -- the engine side's threads -------------------------------------------------------------

    def _spawn(self) -> None:
        # start_new_session: Ctrl-C in a terminal reaches the engine, which stops the child itself.
        # -P: not the working directory first on the import path, as -m alone puts it (a json.py
        # there would run instead of the standard library's); the engine's path comes whole
        # through PYTHONPATH (_child_environment)
        proc = subprocess.Popen([sys.executable, "-P", "-m", "taskengine_core.plugin_process_main"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                start_new_session=True, env=_child_environment())
        os.set_blocking(proc.stdin.fileno(), False)  # a child that stops reading holds up no one
        with self._pipe:
            stopped = self._stopping.is_set()
            if not stopped:
                self._proc, self.up_since = proc, time.monotonic()
                self.starts += 1
                self._send(proc, self._header)
        if stopped:  # stop() came while it was starting (and waits for the child before): this
            proc.kill()  # one has not read its header, so has done nothing; it never runs
            proc.wait()
            self._close_stdin(proc)

    def _watch(self) -> None:
        pause = FIRST_PAUSE
        while True:
            proc, started = self._proc, time.monotonic()
            if proc is not None:  # else the first could not be started: try again after a pause
                code = proc.wait()
                ended = time.monotonic()
                if self.down_since is None or ended - started >= STEADY:
                    self.down_since = ended  # else still down since an earlier exit
                self.last_exit = code
                if self._stopping.is_set():
                    return
                if time.monotonic() - started >= RAN_LONG_ENOUGH:
                    pause = FIRST_PAUSE
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                log.warning("%s (pid %d) %s while the engine runs; starting it again in %gs",
                            self.name, proc.pid, how, pause)
            while True:
                if self._stopping.wait(pause):
                    return
                pause = min(pause * 2, LONGEST_PAUSE)
                try:
                    self._spawn()
                    break
                except OSError as exc:  # out of memory or processes: keep trying
                    log.error("%s could not be started: %s; trying again in %gs", self.name, exc, pause)

    def _write(self) -> None:
        while True:
            with self._pipe:
                while not (self._hints or self._scan or self._stopping.is_set()):
                    self._pipe.wait()
                if self._stopping.is_set():
                    return
                lines = [{"wake": None}] if self._scan else []
                lines += [{"wake": hint} for hint in sorted(self._hints)]
                self._hints, self._scan = set(), False
                proc = self._proc
            if proc is not None:  # else none started yet: the first one looks at everything
                self._send(proc, *lines)

    def _send(self, proc: subprocess.Popen, *lines: dict) -> None:
        """Write JSON lines to the child; waits while its pipe is full, never past a stop."""
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        with self._fd:  # the descriptor is not closed (and its number reused) under our feet
            self._send_locked(proc, data)

    def _send_locked(self, proc: subprocess.Popen, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(proc.stdin.fileno(), data):]
            except BlockingIOError:  # the child is busy: wait until it reads, or a stop
                if self._stopping.is_set():
                    return
                writable = select.poll()  # not select(): descriptors past 1023 are fine
                writable.register(proc.stdin, select.POLLOUT)
                writable.poll(100)
            except (OSError, ValueError):  # it died (the watcher starts another) or was closed
                return

    def _close_stdin(self, proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.stdin is not None:
            with self._fd:
                try:
                    proc.stdin.close()
                except OSError:
                    pass


class PluginProcesses:
    """The processes plugins started on one engine: stopped together when it stops, and
    refused once it has begun to stop (a process started then would outlive the engine's stop)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._running: list[PluginProcess] = []
        self._closed = False

    def start(self, entry: str, *, name: str, listen: str | None = None) -> PluginProcess:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{name}: the engine is stopping; no process is started now")
            process = PluginProcess(entry, name=name, database=self.database, listen=listen)
            process.start()
            self._running = [p for p in self._running if not p.stopped] + [process]
            return process

    def live(self) -> list[PluginProcess]:
        """Those not stopped by their plugin."""
        with self._lock:
            return [p for p in self._running if not p.stopped]

    def stop_all(self) -> None:
        """Stop every one left running (all asked before any is waited for)."""
        with self._lock:
            self._closed = True
            running, self._running = self._running, []
        for process in running:
            process.ask_to_stop()
        for process in running:
            process.stop()


def _child_environment() -> dict:
    """The engine's environment (secret references such as ``${env:NAME}`` resolve the same in
    the child), with this process's import path first so the child imports the same code
    (its working directory only where the engine's path has it, as ``''``)."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
