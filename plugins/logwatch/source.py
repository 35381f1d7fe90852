"""The ``logwatch`` event source: every watched file (and the journal) in one thread, each
looked at in turn, so a burst in one file is read in bounded batches while the others wait at
most one batch. Between passes it sleeps until a watched directory changes (:mod:`.wakeup`) or
``poll`` seconds pass.

For each batch: match the lines, commit their events in one transaction (``emit_many``), then
store the position after them. A failure with one file (unreadable, a database hiccup) is
logged and that file is retried from its stored position; the other files go on.
"""

from __future__ import annotations

import logging
import os
import time

from .follower import Follower, Position
from .patterns import GroupNames
from .rules import LineMatcher
from .schema import DEFAULT_MAX_LINE, DEFAULT_POLL

log = logging.getLogger("taskengine.logwatch")
RETRY_LOG_EVERY = 60.0  # seconds between repeats of the same failure in the log
RETRY_FIRST, RETRY_MAX = 0.5, 30.0  # a failing file is looked at again after this, doubling


class FileWatch:
    """One file: its follower, its matcher and where its position is stored."""

    def __init__(self, spec: dict, group_names: GroupNames) -> None:
        self.path = spec["path"]
        self.state_key = "file:" + self.path
        self.spec = spec
        self.matcher = LineMatcher(spec, group_names)
        self.max_line = int(spec.get("max_line") or DEFAULT_MAX_LINE)
        self.follower: Follower | None = None
        self.saved: dict | None = None

    def step(self, ctx) -> bool:
        """Read, emit and store one batch; ``True`` if there may be more to read right away."""
        if self.follower is None:
            self.saved = ctx.state.get(self.state_key)
            self.follower = Follower(self.path, Position.from_state(self.saved),
                                     from_start=self.spec.get("from") == "start", max_line=self.max_line)
        lines, pos = self.follower.read()
        if lines:
            events = []
            for line in lines:
                found = self.matcher.match(line.text)
                if found is None:
                    continue
                type_, data = found
                data["source"] = self.path
                data["line"] = line.text
                if line.cut:
                    data["line_cut"] = True
                events.append({"type": type_, "data": data, "id": self.follower.line_id(line)})
            if events:
                _emit(ctx, events, self.path)
            if any(line.cut for line in lines):
                log.warning("logwatch: %s: %d line(s) longer than %d bytes were cut (%d so far)",
                            self.path, sum(line.cut for line in lines), self.max_line, pos.cut)
        state = pos.as_state()
        changed = state != self.saved
        if changed:
            ctx.state.set(self.state_key, state)  # after the events: a crash replays, never skips
            self.saved = state
        self.follower.commit(pos)
        return bool(lines) or changed  # a new file to read, say: look again at once

    def reset(self) -> None:
        if self.follower is not None:
            try:
                self.follower.close()
            except OSError:
                pass
        self.follower = None


def _emit(ctx, events: list[dict], where: str) -> None:
    """Commit ``events`` in one transaction; if the inbox refuses one (its data cannot be an
    event), commit the others one by one and log the refused one, so that one line can never
    hold up its file."""
    from taskengine_core.errors import EventError

    try:
        ctx.emit_many(events)
        return
    except EventError:
        pass
    for event in events:
        try:
            ctx.emit_many([event])
        except EventError as exc:
            log.warning("logwatch: %s: line at %s dropped: %s", where, event["id"], exc)


def run_source(ctx) -> None:
    """The source's thread: follow until the engine stops."""
    settings = ctx.settings or {}
    group_names = GroupNames(settings.get("group_file") or "/etc/group")
    watches: list = [FileWatch(spec, group_names) for spec in settings.get("files") or ()]
    if settings.get("journal") is not None:
        from .journal import JournalWatch

        watches.append(JournalWatch(settings["journal"], group_names))
    poll = float(settings.get("poll") or DEFAULT_POLL)
    from .wakeup import Wakeup

    wakeup = Wakeup(os.path.dirname(spec["path"]) for spec in settings.get("files") or ())
    failures: dict[str, tuple[str, float]] = {}
    backoff: dict[str, tuple[float, float]] = {}  # path: (next try, current delay)
    try:
        while not ctx.stopping.is_set():
            busy = False
            for watch in watches:
                if watch.path in backoff and time.monotonic() < backoff[watch.path][0]:
                    continue
                try:
                    busy |= watch.step(ctx)
                    failures.pop(watch.path, None)
                    backoff.pop(watch.path, None)
                except Exception as exc:  # noqa: BLE001 - one file's trouble must not stop the others
                    _log_failure(failures, watch.path, exc)
                    watch.reset()
                    delay = min(RETRY_MAX, backoff.get(watch.path, (0, RETRY_FIRST / 2))[1] * 2)
                    backoff[watch.path] = (time.monotonic() + delay, delay)
            if not busy:
                wakeup.wait(ctx.stopping, poll, [getattr(w, "pipe", None) for w in watches])
    finally:
        wakeup.close()
        for watch in watches:
            watch.reset()


def _log_failure(failures: dict, path: str, exc: Exception) -> None:
    text = f"{type(exc).__name__}: {exc}"
    last = failures.get(path)
    now = time.monotonic()
    if last is None or last[0] != text or now - last[1] >= RETRY_LOG_EVERY:
        log.warning("logwatch: %s: %s; retrying from the stored position", path, text)
        failures[path] = (text, now)
