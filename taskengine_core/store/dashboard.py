"""The dashboard's queries: each page reads through one function here, served by an index.

Pages never build SQL. Lists page by keyset (``created_at`` and ``rowid`` of the last row seen),
never by OFFSET, so the thousandth page costs what the first does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from taskengine_core.store.sql import indexed_by, json_text, rows_as_dicts

RUN_COLUMNS = ("rowid AS seq, id, task, status, trigger, event_id, rule, schedule, slot, created_at, "
               "not_before, started_at, finished_at, attempt, max_attempts, duration, error, attention")
ACTIVE = ("pending", "running")


@dataclass(frozen=True)
class RunFilter:
    task: str | None = None
    status: str | None = None
    trigger: str | None = None
    since: str | None = None  # ISO time, inclusive
    until: str | None = None  # ISO time, exclusive


@dataclass(frozen=True)
class Cursor:
    """Where a page of runs ends: the last row's creation time and rowid."""

    created_at: str
    seq: int

    def encode(self) -> str:
        return f"{self.created_at}~{self.seq}"

    @classmethod
    def decode(cls, text: str | None) -> "Cursor | None":
        if not text or "~" not in text:
            return None
        created_at, _, seq = text.rpartition("~")
        return cls(created_at, int(seq)) if seq.isdigit() else None


def _rows(conn, sql: str, params=()) -> list[dict]:
    return rows_as_dicts(conn.execute(sql, params))


# -- overview ----------------------------------------------------------------------------------


def queue_depth(conn) -> dict:
    """Inbox waiting, runs pending (due now and later) and running, each from a partial index."""
    inbox = conn.execute("SELECT count(*) FROM events WHERE processed_at IS NULL").fetchone()[0]
    pending = conn.execute("SELECT count(*) FROM runs WHERE status = 'pending'").fetchone()[0]
    running = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
    return {"inbox": inbox, "pending": pending, "running": running}


def runs_by_status_since(conn, since: str) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM runs WHERE created_at >= ? GROUP BY status",
                             (since,)).fetchall())


def latest_failures(conn, limit: int = 10) -> list[dict]:
    # walks runs by time from the newest; failures are a small share of recent runs
    return _rows(conn, f"SELECT {RUN_COLUMNS} FROM runs{indexed_by(conn, 'runs_by_created')} WHERE status = 'failed' "
                       "ORDER BY created_at DESC LIMIT ?", (limit,))


def next_fires(conn, limit: int = 10) -> list[dict]:
    return _rows(conn, "SELECT s.schedule, s.next_fire, c.enabled FROM schedule_state s "
                       "JOIN schedules c ON c.name = s.schedule WHERE s.next_fire IS NOT NULL "
                       "ORDER BY s.next_fire LIMIT ?", (limit,))


# -- runs --------------------------------------------------------------------------------------


def runs_page(conn, where: RunFilter, after: Cursor | None, limit: int) -> list[dict]:
    """Newest first, ``limit`` rows older than ``after``."""
    clauses, params = [], []
    for column in ("task", "status", "trigger"):
        value = getattr(where, column)
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.since:
        clauses.append("created_at >= ?")
        params.append(where.since)
    if where.until:
        clauses.append("created_at < ?")
        params.append(where.until)
    if after is not None:
        clauses.append("(created_at, rowid) < (?, ?)")
        params += [after.created_at, after.seq]
    sql = f"SELECT {RUN_COLUMNS} FROM runs"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
    return _rows(conn, sql, (*params, limit))


def runs_by_ids(conn, ids: list[str]) -> list[dict]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return _rows(conn, f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({marks})", ids)


def run_trace(conn, run_id: str) -> dict | None:
    """A run with everything around it: the event that caused it and what each rule decided
    about that event, its attempts, the events it emitted and the webhook deliveries it made."""
    found = _rows(conn, "SELECT rowid AS seq, * FROM runs WHERE id = ?", (run_id,))
    if not found:
        return None
    run = found[0]
    run.pop("rowid", None)  # PostgreSQL's rowid is a column, so ``*`` has it too: ``seq`` is enough
    run["params"] = _json(run["params"])
    run["output"] = _json(run["output"])
    run["attempts"] = _rows(conn, "SELECT number, started_at, finished_at, outcome, error, traceback, "
                                  "output, duration, plugin, plugin_version FROM attempts "
                                  "WHERE run_id = ? ORDER BY number", (run_id,))
    for attempt in run["attempts"]:
        attempt["output"] = _json(attempt["output"])
    run["decisions"] = _rows(conn, "SELECT time, decision, reason, rule, schedule, slot, task FROM decisions "
                                   "WHERE run_id = ? ORDER BY id", (run_id,))
    run["event"] = None
    run["event_decisions"] = []
    if run["event_id"]:
        run["event"] = event(conn, run["event_id"])
        run["event_decisions"] = event_decisions(conn, run["event_id"])
    # the engine's own events about this run (task.started, task.failed, ...), stored while it ran
    run["emitted"] = _rows(conn, "SELECT id, type, source, time, processed_at FROM events "
                                 "WHERE received_at >= ? AND received_at <= ? AND source = 'taskengine' "
                                 f"AND {json_text(conn, 'data', 'run_id')} = ? ORDER BY seq LIMIT 100",
                           (run["created_at"], run["finished_at"] or "9999", run_id))
    run["deliveries"] = _rows(conn, "SELECT id, webhook, status, type, attempts, max_attempts, last_status_code, "
                                    "last_error, created_at, finished_at FROM webhook_deliveries "
                                    "WHERE run_id = ? ORDER BY created_at", (run_id,))
    return run


def event(conn, event_id: str) -> dict | None:
    found = _rows(conn, "SELECT id, type, source, source_id, data, time, received_at, processed_at, "
                        "duplicate_of FROM events WHERE id = ?", (event_id,))
    if not found:
        return None
    found[0]["data"] = _json(found[0]["data"])
    return found[0]


def event_decisions(conn, event_id: str) -> list[dict]:
    return _rows(conn, "SELECT time, decision, reason, rule, task, run_id FROM decisions "
                       "WHERE event_id = ? ORDER BY id", (event_id,))


def recent_events(conn, limit: int = 20) -> list[dict]:
    return _rows(conn, "SELECT id, type, source, time, received_at, processed_at, duplicate_of FROM events "
                       "ORDER BY seq DESC LIMIT ?", (limit,))


def task_runs(conn, task: str, limit: int = 10) -> list[dict]:
    return runs_page(conn, RunFilter(task=task), None, limit)


# -- schedules ---------------------------------------------------------------------------------


def schedule_states(conn) -> dict[str, dict]:
    return {r["schedule"]: r for r in _rows(conn, "SELECT schedule, next_fire, last_slot FROM schedule_state")}


def missed_slots(conn, limit: int = 50) -> list[dict]:
    """Slots that did not fire as planned (missed, coalesced, skipped), newest first."""
    return _rows(conn, "SELECT schedule, due, status, claimed_at, reason FROM schedule_slots "
                       "WHERE status != 'fired' ORDER BY claimed_at DESC LIMIT ?", (limit,))


# -- webhooks ----------------------------------------------------------------------------------


def delivery_attempts(conn, delivery_id: str) -> list[dict]:
    return _rows(conn, "SELECT number, started_at, duration, address, status_code, outcome, error, "
                       "response_excerpt FROM webhook_attempts WHERE delivery_id = ? ORDER BY number",
                 (delivery_id,))


def webhook_outcomes(conn) -> list[tuple[str, str, int]]:
    """Attempts by destination and outcome, for the metrics endpoint."""
    return conn.execute("SELECT d.webhook, a.outcome, count(*) FROM webhook_attempts a "
                        "JOIN webhook_deliveries d ON d.id = a.delivery_id GROUP BY 1, 2").fetchall()


# -- metrics -----------------------------------------------------------------------------------


def oldest_due_pending(conn, now: str) -> str | None:
    """The due time of the longest-waiting run that is due now (schedule lateness seen live)."""
    row = conn.execute("SELECT min(not_before) FROM runs WHERE status = 'pending' AND not_before <= ?",
                       (now,)).fetchone()
    return row[0] if row else None


def finished_run(conn, run_id: str) -> dict | None:
    found = _rows(conn, "SELECT task, status, trigger, slot, not_before, started_at, duration FROM runs "
                        "WHERE id = ?", (run_id,))
    return found[0] if found else None


# -- wiring ------------------------------------------------------------------------------------


def wiring(conn) -> tuple[list[tuple[str, str]], list[tuple[tuple[str, str], tuple[str, str]]]]:
    """Nodes ``(kind, name)`` and edges between them: schedule→task, event→task, task→webhook.
    What ``taskengine graph`` draws, and the dashboard's picture."""
    nodes = [("schedule", r[0]) for r in conn.execute("SELECT name FROM schedules ORDER BY name")]
    nodes += [("event", r[0]) for r in conn.execute("SELECT name FROM event_rules ORDER BY name")]
    nodes += [("task", r[0]) for r in conn.execute("SELECT name FROM tasks ORDER BY name")]
    nodes += [("webhook", r[0]) for r in conn.execute("SELECT name FROM webhooks ORDER BY name")]
    edges = [(("schedule", s), ("task", t))
             for t, s in conn.execute("SELECT task, schedule FROM task_schedules ORDER BY 2, 1")]
    edges += [(("event", e), ("task", t))
              for t, e in conn.execute("SELECT task, event_rule FROM task_events ORDER BY 2, 1")]
    edges += [(("task", t), ("webhook", w))
              for t, w in conn.execute("SELECT task, webhook FROM task_webhooks ORDER BY 1, 2")]
    return nodes, edges


def _json(text):
    return json.loads(text) if text else None

