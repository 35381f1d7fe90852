"""An engine on a temporary database, for plugin authors' tests: apply rules, emit, run until
idle, read the runs. Everything real: plugin manager, rule loader, store, executor."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Iterable


class Harness:
    """One engine on ``db_path`` (an SQLite file, or a ``postgresql://`` URL) with the installed
    plugins and ``plugins`` loaded.

    :param plugins: plugin modules or objects to load besides the installed entry points; one
        that an entry point already loaded is not loaded twice.
    :param load_entry_points: also load installed plugins (default True).
    :param clock: an injected clock (``now()``, ``monotonic()``), for schedules and delays.
    """

    def __init__(self, db_path: str | Path, *, plugins: Iterable[object] = (),
                 load_entry_points: bool = True, clock=None, workers: int = 4) -> None:
        from taskengine_core.plugins import get_plugin_manager
        from taskengine_core.store import is_postgres_target

        self.db_path = str(db_path) if is_postgres_target(db_path) else Path(db_path)
        self._rules_dir: Path | None = None  # PostgreSQL: a temporary directory for the rule files
        self.manager = get_plugin_manager(extra_plugins=list(plugins), load_entry_points=load_entry_points)
        self.clock = clock
        self.workers = workers
        self._engine = None

    @property
    def registry(self):
        """What the loaded plugins registered: ``.actions``, ``.triggers``, ``.notifiers``."""
        return self.manager.registry()

    @property
    def engine(self):
        """The :class:`~taskengine_core.engine.Engine`, made (and its workers started) on first use."""
        if self._engine is None:
            from taskengine_core.engine import Engine

            self._engine = Engine(self.db_path, manager=self.manager, clock=self.clock, workers=self.workers)
            self._engine.executor.start()
        return self._engine

    def apply(self, rules: str, *, name: str = "rules.yaml") -> list:
        """Check and apply a rule file given as YAML text (indentation is removed). Raises
        :class:`~taskengine_core.errors.RuleFileError` listing every problem. Returns the
        changes (created, updated, deleted objects)."""
        from taskengine_core.apply import apply_config
        from taskengine_core.rules.validate import load_config
        from taskengine_core.store import open_store

        path = self._rules_parent() / "rules" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(rules).lstrip(), encoding="utf-8")
        config = load_config([path], self.registry)
        store = open_store(self.db_path)
        try:
            return apply_config(store, config).changes
        finally:
            store.close()

    def _rules_parent(self) -> Path:
        if isinstance(self.db_path, Path):
            return self.db_path.parent  # next to the SQLite file
        if self._rules_dir is None:
            import tempfile

            self._rules_dir = Path(tempfile.mkdtemp(prefix="taskengine-harness-"))
        return self._rules_dir

    def emit(self, type: str, data: dict | None = None, **fields: Any) -> str:  # noqa: A002
        """Commit an event (``data`` and keyword fields merged) and return its id."""
        return self.engine.emit(type, {**(data or {}), **fields}, source="test")

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Evaluate waiting events and run what they (and due schedules) trigger, until nothing
        is left to do."""
        self.engine.run_until_idle(timeout=timeout)
        self.engine.notifications.wait_idle(timeout)  # notify: messages are sent on a thread

    def emit_and_run(self, type: str, data: dict | None = None, **fields: Any) -> list[dict]:  # noqa: A002
        """Emit an event, run until idle, and return the runs it triggered (see :meth:`run`)."""
        event_id = self.emit(type, data, **fields)
        self.run_until_idle()
        return [run for run in self.runs() if run["event_id"] == event_id]

    def run_task(self, name: str, **params: Any) -> dict:
        """Run a task by hand now (parameters overridden by ``params``) and wait for its end."""
        engine = self.engine
        run_id = engine.queue_run(name, params or None, actor="test")
        engine.execute(run_id, timeout=60)
        return self.run(run_id)

    def run(self, run_id: str) -> dict:
        """One run as ``taskengine logs show --json`` shows it: ``status``, ``output``,
        ``error``, ``attempts``, ``decisions``, ``event``."""
        from taskengine_core.task_logs import show_run

        return show_run(self.engine.store, run_id)

    def runs(self, task: str | None = None) -> list[dict]:
        """Every run (of ``task``), oldest first."""
        from taskengine_core.task_logs import list_runs

        newest_first = list_runs(self.engine.store, task=task, limit=1_000_000)
        return [self.run(row["id"]) for row in reversed(newest_first)]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.executor.stop(0)
            self._engine.store.close()
            self._engine = None
        if self._rules_dir is not None:
            import shutil

            shutil.rmtree(self._rules_dir, ignore_errors=True)
            self._rules_dir = None
