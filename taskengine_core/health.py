"""``GET /healthz``: whether the engine can take events and is making progress.

Answers 200 with ``"status": "ok"``, or 503 with ``"status": "failing"`` and ``reasons`` when
- the database file was deleted or replaced while the engine runs (nothing can be stored);
- the database cannot be read within :data:`READ_TIMEOUT` seconds;
- the engine loop thread has ended, or has not completed a step for ``stall_after`` seconds
  while it keeps failing or while work waits (an event in the inbox, a run that is due).

It reads through a read-only connection of its own with a short busy timeout, never the write
path, and only index-served, bounded queries (:mod:`taskengine_core.store.health_queries`).
"""

from __future__ import annotations

import threading

from taskengine_core import __version__
from taskengine_core.clock import to_iso
from taskengine_core.errors import DatabaseFileError
from taskengine_core.store.health_queries import health_counts, open_reader, read_errors

DEFAULT_STALL_AFTER = 30.0  # seconds without a completed loop step before work waiting is a stall
READ_TIMEOUT = 1.0


class HealthCheck:
    def __init__(self, engine, *, stall_after: float = DEFAULT_STALL_AFTER) -> None:
        self.engine, self.stall_after = engine, stall_after
        self._conn = None
        self._lock = threading.Lock()

    def report(self) -> tuple[int, dict]:
        """(HTTP status, body)."""
        reasons: list[str] = []
        counts = None
        try:
            self.engine.store.check_file()
        except DatabaseFileError as exc:
            reasons.append(str(exc))
        if not reasons:
            try:
                counts = self._read()
            except read_errors() as exc:
                self.close()  # a broken connection (a server restarted, say) is opened anew next time
                reasons.append(f"database {self.engine.store.path} cannot be read within {READ_TIMEOUT:g}s: {exc}")
        body = {"status": "ok", "version": __version__}
        for key in ("inbox", "runs_pending", "runs_running"):
            body[key] = counts[key] if counts else None
        if counts and counts["paused"] is not None:  # shown only while paused
            body["paused"] = counts["paused"]
        body["loop"] = self._loop(counts, reasons)
        processes = self._processes(reasons)
        if processes:
            body["processes"] = processes
        if reasons:
            body["status"], body["reasons"] = "failing", reasons
            return 503, body
        return 200, body

    def _processes(self, reasons: list[str]) -> list[dict]:
        """Plugins' processes (``engine.start_process``): each one's state; one that has not run
        for ``stall_after`` seconds (it keeps failing to start, say) is a reason."""
        shown = []
        for process in self.engine.plugin_processes.live():
            down = process.down_for()
            shown.append({"name": process.name, "pid": process.pid, "restarts": max(process.starts - 1, 0),
                          "last_exit": process.last_exit})
            if down is not None and down > self.stall_after:
                reasons.append(f"{process.name} has not been running for {down:.0f}s (last exit "
                               f"code {process.last_exit}): see the engine's log")
        return shown

    def _loop(self, counts: dict | None, reasons: list[str]) -> dict:
        engine, guard = self.engine, self.engine.loop_guard
        stalled = guard.stalled_for()
        state = {"last_step_seconds_ago": round(stalled, 3), "failures_in_a_row": guard.failures}
        if guard.last_error:
            state["last_error"] = guard.last_error
        thread = engine._loop_thread
        if thread is not None and not thread.is_alive() and not engine.stopping.is_set():
            reasons.append("the engine loop has ended: nothing is evaluated or run; see the "
                           "engine's log and restart it")
        elif stalled > self.stall_after:
            if guard.failures:
                reasons.append(f"the engine loop has failed {guard.failures} step(s) in a row and "
                               f"completed none for {stalled:.0f}s: {guard.last_error}")
            elif counts and (counts["inbox"] or counts["run_due"]):
                waiting = [f"{counts['inbox']} event(s) wait" if counts["inbox"] else "",
                           "runs are due" if counts["run_due"] else ""]
                reasons.append(f"the engine loop has not completed a step for {stalled:.0f}s while "
                               f"{' and '.join(w for w in waiting if w)}: it is stuck (see the "
                               "engine's log); restart it")
        return state

    def _read(self) -> dict:
        from taskengine_core.holds import current_pause

        with self._lock:
            if self._conn is None:
                self._conn = open_reader(self.engine.db_path, READ_TIMEOUT)
            now = self.engine.clock.now()
            counts = health_counts(self._conn, to_iso(now))
            counts["paused"] = current_pause(self._conn, now)  # since, until, reason, by: runs wait
            return counts

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
