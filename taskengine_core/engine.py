"""The engine: one loop that evaluates events and drives the executor, plus the HTTP ingress,
plugin event sources and lifecycle hooks around it. Also the Python API (``Engine.emit``)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path

from taskengine_core.clock import Clock, to_iso
from taskengine_core.context import EngineInfo
from taskengine_core.durations import parse_duration
from taskengine_core.evaluator import Evaluator, NewRun
from taskengine_core.events import Event, inbox_waiting, insert_events, row_to_event
from taskengine_core.cluster import LEASE_SECONDS, NodeHeartbeat
from taskengine_core.errors import NotFoundError, SecretError, TaskEngineError
from taskengine_core.ids import new_id
from taskengine_core.executor import DEFAULT_LEASE, DEFAULT_WORKERS, Executor
from taskengine_core.loop_guard import LoopGuard
from taskengine_core.plugin_processes import PluginProcesses
from taskengine_core.scheduler import Scheduler
from taskengine_core.model import Runtime, load_runtime, refresh_runtime
from taskengine_core.secrets import LITERAL_SECRET, SecretResolver, literal_secrets
from taskengine_core.sources import EventSources
from taskengine_core.store import Store, inbox, is_postgres_target, open_store, runs as run_store
from taskengine_core.store.checkpoint import Checkpointer
from taskengine_core.store.config import generation_to_act_on
from taskengine_core.store.decisions import record_decision
from taskengine_core.task_logs import PRUNE_PAUSE
from taskengine_core.wakeup import listener, poke
from taskengine_core.worker import AttemptRunner

log = logging.getLogger("taskengine.engine")
DEFAULT_RETENTION = "90d"
PRUNE_EVERY = 3600.0
# While events keep arriving, the loop's evaluation passes are at least this far apart, so that
# each takes a batch: a pass per ingress commit would take the store's write lock and the GIL
# from the ingress as often as it commits. An event arriving after a quiet spell is evaluated
# at once.
EVALUATION_GAP = 0.01


LEASE_ENV = "TASKENGINE_LEASE_SECONDS"


def lease_seconds(shared: bool) -> float:
    """How long a run's lease lasts (renewed every third of it): ``TASKENGINE_LEASE_SECONDS``,
    else 30 s on a database several engines share (a dead node's runs are taken over after it)
    and 60 s on SQLite (where a dead process is noticed by its pid first)."""
    text = os.environ.get(LEASE_ENV, "").strip()
    if not text:
        return LEASE_SECONDS if shared else DEFAULT_LEASE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 86400:
        raise TaskEngineError(f"{LEASE_ENV}={text[:20]!r}: expected seconds between 1 and 86400 (how long "
                              "a dead engine's runs wait before another engine takes them over)")
    return value


class Engine:
    """Everything that runs in ``taskengine run``. Usable from Python and in tests."""

    def __init__(self, db_path: str | Path, *, manager=None, clock: Clock | None = None,
                 workers: int | None = None, poll_interval: float = 0.2,
                 wake_listener: bool = True) -> None:
        from taskengine_core.plugins import get_plugin_manager

        self.db_path = str(db_path)
        self.clock = clock or Clock()
        self.manager = manager or get_plugin_manager()
        self.registry = self.manager.registry()
        self.shared = is_postgres_target(self.db_path)  # several engines, perhaps on several machines
        lease = lease_seconds(self.shared)
        self.store = open_store(db_path)  # an SQLite file, or postgresql://... shared with other engines
        self.poll_interval = poll_interval
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.secrets = SecretResolver(self.manager.hook)
        self._local = threading.local()
        self.runtime: Runtime = load_runtime(self.store)
        workers = workers or int(self.runtime.settings.get("workers") or DEFAULT_WORKERS)
        from taskengine_core.deliveries import Deliveries

        self.deliveries = Deliveries(self._thread_store)  # plugin API 2: no database path
        runner = AttemptRunner(registry=self.registry, secrets=self.secrets, clock=self.clock,
                               load_event=self._load_event, emit=self.emit,
                               deliveries=self.deliveries, state_store=self._thread_store)
        self.evaluator = Evaluator(self.clock)
        self.scheduler = Scheduler(self.store, self.clock)
        from taskengine_core.notify import HooksWithNotifications, RunNotifications

        self.notifications = RunNotifications(self)  # a task's notify: on its outcome
        self.executor = Executor(self.store, runner, clock=self.clock, workers=workers, lease=lease,
                                 hook=HooksWithNotifications(self.manager.hook, self.notifications),
                                 wake=self.wake)
        self.info = self._engine_info(None)
        self._loop_thread: threading.Thread | None = None
        self.plugin_processes = PluginProcesses(self.db_path)  # stopped after engine_stopping
        self.sources = EventSources(self, owner=self.executor.owner, lease=lease)
        self.heartbeat = NodeHeartbeat(self.executor.owner, self.open_thread_store, clock=self.clock, lease=lease)
        self._next_prune = 0.0
        self._pruner = None  # a retention prune in progress: one short batch per loop step
        self._next_optimize = self.clock.monotonic() + PRUNE_EVERY  # not at start: nothing ran yet
        self._next_evaluation = 0.0  # time.monotonic(): the loop's next evaluation pass, at the earliest
        self.ingress = None
        self._checkpointer: Checkpointer | None = None
        self.loop_guard = LoopGuard("engine loop", log)  # backoff on failures; /healthz's heartbeat
        # other processes (taskengine emit, config changes) poke it after their commit
        self._wakeup = listener(self.db_path, self._woken) if wake_listener else None

    def _woken(self) -> None:
        self.wake.set()
        if self.shared:  # another engine may have queued webhook deliveries too
            self.deliveries.queued()

    # -- the Python API --------------------------------------------------------------------------

    def emit(self, type: str, data: dict | None = None, *, source: str = "api",  # noqa: A002
             id: str | None = None) -> str:  # noqa: A002
        """Commit one event to the inbox and return its id (after the commit)."""
        return self.emit_many([Event(type, data or {}, source=source, source_id=id)])[0]

    def emit_many(self, events: list[Event], *, checked: bool = False) -> list[str]:
        """Commit many events in one transaction; returns their ids. ``checked``: the caller
        already validated them (the ingress does, per request)."""
        ids = insert_events(self._thread_store(), events, clock=self.clock, checked=checked)
        if self._loop_thread is None:  # not running here: a running engine elsewhere looks now
            poke(self._thread_store())
        elif time.monotonic() >= self._next_evaluation:  # else the loop is about to evaluate anyway
            self.wake.set()
        return ids

    def queue_run(self, task: str, params: dict | None = None, *, actor: str = "api",
                  event_id: str | None = None) -> str:
        """Queue a manual run of ``task`` (enabled or not), due now; returns the run id. With
        ``event_id``, the run's templates see that stored event as ``event``."""
        params = params or {}
        if params and (literal := literal_secrets(params)):  # the run's parameters are stored as given
            raise SecretError(f"parameter {literal[0]}: {LITERAL_SECRET}")
        store = self._thread_store()  # callable from any thread
        while True:
            runtime = self.runtime
            config = runtime.tasks.get(task)
            if config is None:  # perhaps applied since: look again in the stored configuration
                self._refresh_config()
                runtime = self.runtime
                config = runtime.tasks.get(task)
                if config is None:
                    raise NotFoundError(f"no task named {task!r}; see 'taskengine tasks list'")
            # a bad --param queues nothing
            self.executor.runner.check_params(config, params, exists=self._object_exists)
            now = to_iso(self.clock.now())
            run = NewRun(config, "manual", now, params=params or None, event_id=event_id, id=new_id())
            row = run.row(now)
            with store.write() as db:
                # the task was looked up and checked in the configuration this engine holds: is
                # it still the stored one? Read under the write lock, so no apply comes between.
                if generation_to_act_on(db.conn) == runtime.generation:
                    if event_id is not None and not inbox.exists(db.conn, event_id):
                        raise NotFoundError(f"no event with id {event_id!r}; see 'taskengine logs list' "
                                            "or 'taskengine emit'")
                    run_store.insert(db.conn, [row])
                    record_decision(db.conn, now, "manual", f"run by hand by {actor}", task=task,
                                    run_id=run.id, event_id=event_id)
                    break
            self._refresh_config()  # it changed: look the task up and check it again in the new one
        if not self.wake.is_set():  # a loop in this process looks now (set already: it will)
            self.wake.set()
        return run.id

    def _object_exists(self, section: str, name: str) -> bool:
        from taskengine_core.catalog import object_exists

        return object_exists(self._thread_store(), section, name)

    def execute(self, run_id: str, timeout: float | None = None) -> str:
        """Run one queued run in this process (unless another engine claimed it first) and wait
        until it is final, retries included. Returns its final status."""
        import time

        from taskengine_core.runs import FINAL
        from taskengine_core.store.runs import status as run_status

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._refresh_config()
            self.executor.step(self.runtime, only=run_id)
            status = run_status(self.store.conn, run_id)
            if status in FINAL and self.executor.idle():
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {status}")
            due = self.executor.next_due_in() if status == "pending" else None
            self.wake.wait(min(0.05, due) if due is not None else 0.05)
            self.wake.clear()

    def source_state(self, name: str):
        """The durable key/value state of the event source ``name`` (also for tests and tools)."""
        from taskengine_core.plugin_state import PluginState

        return PluginState(self._thread_store, "source:" + name, self.clock)

    # -- running ---------------------------------------------------------------------------------

    def start(self, *, listen: str | None = None, token: str | None = None, ui: bool = False) -> None:
        """Start everything; with ``listen``, the HTTP ingress, and with ``ui`` the dashboard
        and /metrics on the same listener."""
        if not self.shared:  # SQLite's WAL; a server checkpoints by itself
            self._checkpointer = Checkpointer(self.db_path)
            self._checkpointer.start()  # from now on this process's commits leave checkpoints to it
        try:
            if self._wakeup is not None:
                self._wakeup.start()
            self.executor.recover(self.runtime)
            self.executor.start()
            if listen:
                from taskengine_core.ingress import Ingress

                self.ingress = Ingress(self, listen, token=token, ui=ui)
                self.ingress.start()
                self.info = self._engine_info(self.ingress.address)
            self.sources.start()
            self.heartbeat.begin()
        except BaseException:
            self._undo_start()
            raise
        self._loop_thread = threading.Thread(target=self._loop, name="taskengine-loop", daemon=True)
        self._loop_thread.start()
        try:
            self.manager.hook.engine_started(engine=self.info)
        except Exception:  # noqa: BLE001 - a plugin's start-up failure must not stop the engine
            log.exception("an engine_started hook failed; the engine runs without it")

    def _undo_start(self) -> None:
        """Stop what a failed :meth:`start` had started, newest first."""
        self.sources.stop(join=False)
        self.heartbeat.close()
        if self.ingress is not None:
            self.ingress.stop()
            self.ingress = None
        self.executor.stop(0)
        if self._wakeup is not None:
            self._wakeup.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def stop(self, grace: float = 30.0) -> None:
        """Stop claiming runs; let in-flight runs finish within ``grace``; mark the rest interrupted."""
        if self.stopping.is_set():
            return
        try:
            self.manager.hook.engine_stopping(engine=self.info)
        except Exception:  # noqa: BLE001
            log.exception("engine_stopping hook failed")
        self.plugin_processes.stop_all()  # a plugin stops its own; any it left, stop here
        self.stopping.set()
        self.wake.set()
        if self.ingress is not None:
            self.ingress.stop()
        self.sources.stop(join=False)
        if self._loop_thread is not None:
            self._loop_thread.join()
        if self._wakeup is not None:
            self._wakeup.stop()
        self.executor.stop(grace)
        self.notifications.stop()
        self.sources.stop()
        self.heartbeat.close()
        self.store.optimize(wait=False)  # statistics for what this engine's queries used
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def step(self, *, evaluate: bool = True) -> int:
        """One pass of the loop: reload changed config, evaluate events, run the executor."""
        self._refresh_config()
        done = self.scheduler.tick(self.runtime)
        if evaluate:
            done += self._evaluate()
        if done and self.shared:  # new runs: the other engines on the database may claim them now
            poke(self.store)
        done += self.executor.step(self.runtime)
        self._maybe_prune()
        return done

    def run_until_idle(self, timeout: float = 30.0, max_wait: float = 2.0) -> None:
        """Step until no event waits, nothing runs, and no run is due within ``max_wait``
        seconds (a retry's backoff, say). For tests and scripts."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worked = self.step()
            pruning = self._pruner is not None  # a retention prune in progress: finish it
            if worked or pruning or not self.executor.idle() or inbox_waiting(self.store.conn):
                if not worked:
                    self.wake.wait(0.01)
                    self.wake.clear()
                continue
            due = self._next_due_in()
            if due is None or due > max_wait:
                return
            before = self.clock.now()
            self.wake.wait(min(due, 0.05))
            self.wake.clear()
            if self.clock.now() == before:
                return  # an injected clock that only the caller moves: waiting cannot help
        raise TimeoutError("the engine did not become idle in time")

    def _evaluate(self) -> int:
        evaluated = self.evaluator.process_pending(self.store, self.runtime)
        if evaluated:
            self._next_evaluation = time.monotonic() + EVALUATION_GAP
        return evaluated

    def _loop(self) -> None:
        while not self.stopping.is_set():
            evaluate = time.monotonic() >= self._next_evaluation
            try:
                self.store.check_file()  # a deleted or replaced database: fail loudly, store nothing
                worked = self.step(evaluate=evaluate)
            except Exception as exc:  # noqa: BLE001 - keep the engine alive; logged once per interval
                self.stopping.wait(self.loop_guard.failed(exc))  # back off: a full disk stays full
                continue
            self.loop_guard.succeeded()
            if worked:
                continue
            due = self._next_due_in(evaluation_owed=not evaluate)
            wait = self.poll_interval if due is None else min(self.poll_interval, due)
            self.wake.wait(wait)
            self.wake.clear()

    # -- helpers ---------------------------------------------------------------------------------

    def _next_due_in(self, *, evaluation_owed: bool = False) -> float | None:
        """Seconds until something is due. ``evaluation_owed``: the loop skipped an evaluation
        pass within the gap (and emitting did not wake it), so the end of the gap is due, even
        if it has passed meanwhile."""
        evaluation: float | None = self._next_evaluation - time.monotonic()
        if evaluation_owed:
            evaluation = max(0.0, evaluation)
        elif evaluation <= 0:
            evaluation = None  # no gap running: nothing to come back for
        pruning = PRUNE_PAUSE if self._pruner is not None else None  # the next batch
        dues = [d for d in (self.executor.next_due_in(), self.scheduler.next_due_in(), evaluation,
                            pruning) if d is not None]
        return min(dues) if dues else None

    def _engine_info(self, listen: str | None) -> EngineInfo:
        return EngineInfo(listen=listen, emit=self.emit, deliveries=self.deliveries,
                          settings=self.runtime.settings, resolve=self.secrets.resolve,
                          redact=self.secrets.redactor.scrub, start_process=self.start_process)

    def start_process(self, entry: str, *, name: str):
        """Run a plugin's background work, ``entry`` ("module:function"), in a process of its
        own on this engine's database, started again if it dies, stopped with the engine at
        the latest (see :mod:`taskengine_core.plugin_processes`); returns the
        :class:`~taskengine_core.plugin_processes.PluginProcess` (``wake(hint)``, ``stop()``).
        Raises RuntimeError once the engine has begun to stop."""
        return self.plugin_processes.start(entry, name=name, listen=self.info.listen)

    def _refresh_config(self) -> None:
        runtime = refresh_runtime(self.store, self.runtime)  # only what changed is compiled again
        if runtime is not self.runtime:
            self.runtime = runtime
            log.info("configuration reloaded (generation %s)", runtime.generation)

    def open_thread_store(self):
        """A store of its own for a thread that closes it when done (a lease's thread)."""
        return open_store(self.db_path, migrate=False, create=False, identity=self.store.identity)

    def _thread_store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = open_store(self.db_path, migrate=False, create=False,
                                                   identity=self.store.identity)
        return store

    def _load_event(self, event_id: str) -> dict | None:
        from taskengine_core.store import inbox

        row = inbox.load(self._thread_store().conn, event_id)
        return row_to_event(row) if row else None

    def _maybe_prune(self) -> None:
        """Retention, one short batch per loop step (see ``task_logs.Pruner``): evaluation,
        claiming and the ingress's commits go on in between."""
        from taskengine_core.task_logs import Pruner

        if self._pruner is not None:
            if self._pruner.step():
                return
            removed, self._pruner = self._pruner.removed, None
            if removed["runs"] or removed["events"]:
                log.info("retention: pruned %(runs)s runs and %(events)s events", removed)
            if self.clock.monotonic() >= self._next_optimize:  # statistics follow the tables' growth
                self._next_optimize = self.clock.monotonic() + PRUNE_EVERY
                self.store.optimize()
        now = self.clock.monotonic()  # the next prune may be due already (a long prune, a clock jump)
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        keep = parse_duration(self.runtime.settings.get("retention", DEFAULT_RETENTION), clamp=True)
        self._pruner = Pruner(self.store, keep, clock=self.clock)
        self._maybe_prune()
