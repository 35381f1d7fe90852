"""What every command shares: the database option, the plugin manager, the error boundary."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import click

from taskengine_core.errors import NotFoundError, RuleFileError, TaskEngineError

DEBUG_ENV = "TASKENGINE_DEBUG"


@dataclass
class App:
    """Per-invocation state, created by the top-level group and found with ``pass_app``."""

    db_option: str | None = None
    target: Any = None  # what the database was opened by: the SQLite path, or the URL as given
    _manager: Any = None
    _store: Any = None
    extra_plugins: list = field(default_factory=list)
    plugin_commands: dict | None = None

    @property
    def manager(self):
        """The plugin manager; plugins that fail to load are reported once, as warnings."""
        if self._manager is None:
            from taskengine_core.plugins import get_plugin_manager

            self._manager = _warning_to_stderr(
                lambda: get_plugin_manager(extra_plugins=self.extra_plugins))
        return self._manager

    @property
    def registry(self):
        """Everything plugins registered (built on first use: --help does not need it)."""
        manager = self.manager
        return _warning_to_stderr(manager.registry)

    def store(self, *, create: bool = False):
        """Open (and migrate) the database. Only ``create`` (``apply``, ``run``) makes a new one
        (and the default location's directory); every other command needs it to exist, so a
        mistyped ``--db`` is an error, not a new empty database."""
        if self._store is None:
            from taskengine_core.store import Store, resolve_db_path

            named = self.db_option or os.environ.get("TASKENGINE_DB")
            if named and "://" in named:  # sqlite:///PATH or postgresql://... (others refused)
                from taskengine_core.store import is_postgres_target, open_store

                self._store = open_store(named, create=create)
                self.target = named if is_postgres_target(named) else self._store.path
                return self._store
            path, explicit = resolve_db_path(self.db_option)
            self._store = Store(path, create_dir=create and not explicit, create=create)
            self.target = path
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


pass_app = click.make_pass_decorator(App, ensure=True)


def _warning_to_stderr(make):
    from taskengine_core.plugins import PluginLoadWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginLoadWarning)
        result = make()
    for warning in caught:
        if issubclass(warning.category, PluginLoadWarning):
            click.echo(f"warning: {warning.message}", err=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result


def fail(message: str) -> None:
    raise click.ClickException(message)


class ErrorBoundaryGroup(click.Group):
    """Turns domain errors into one-line messages (exit 1); ``TASKENGINE_DEBUG=1`` adds tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RuleFileError as exc:
            _debug_traceback()
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            count = len(exc.problems)
            raise click.ClickException(f"{count} error{'s' if count != 1 else ''} found") from None
        except NotFoundError as exc:
            _debug_traceback()
            raise click.ClickException(str(exc)) from None
        except TaskEngineError as exc:
            _debug_traceback()
            raise click.ClickException(str(exc)) from None


def _debug_traceback() -> None:
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc(file=sys.stderr)
