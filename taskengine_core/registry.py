"""What plugins provide: actions, triggers, notifiers and settings sections.

Hooks hand items to a core-owned ``register(...)`` callback. It validates each item, records
the plugin (distribution and version) that supplied it, and refuses duplicate names loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from taskengine_core.errors import RegistrationError

_EMPTY_OBJECT_SCHEMA: dict = {"type": "object"}


@dataclass(frozen=True)
class PluginInfo:
    """Who supplied an item: the plugin's name, its distribution and that distribution's version."""

    name: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})"


@dataclass(frozen=True)
class Item:
    """One registered thing: an action, a trigger, a notifier or a settings section."""

    kind: str
    name: str
    func: Callable[..., Any] | None
    schema: dict
    description: str
    plugin: PluginInfo
    idempotent: bool = False
    # settings sections only: ``check(value)`` yields ``(path inside the section, message)`` for
    # what a JSON Schema cannot say (a regex that does not compile); ``validate`` reports them
    check: Callable[[Any], Any] | None = None
    # triggers only: ``every_node`` (each engine sharing the database runs its own copy: a log
    # file on that machine) or ``one_node`` (one copy in the whole cluster, on the engine that
    # holds its lease: a poller of a shared system, whose events would otherwise come N times)
    runs_on: str = "every_node"

    def as_dict(self) -> dict:
        data = {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "schema": self.schema,
            "plugin": self.plugin.name,
            "distribution": self.plugin.distribution,
            "version": self.plugin.version,
        }
        if self.kind == "action":
            data["idempotent"] = self.idempotent
        if self.kind == "trigger":
            data["runs_on"] = self.runs_on
        return data


KINDS = ("action", "trigger", "notifier", "settings")


@dataclass
class Registry:
    """Every item plugins registered, by kind and name."""

    items: dict[str, dict[str, Item]] = field(default_factory=lambda: {k: {} for k in KINDS})
    plugin_secret_schemes: bool = False  # a plugin implements resolve_secret

    @property
    def actions(self) -> dict[str, Item]:
        return self.items["action"]

    @property
    def triggers(self) -> dict[str, Item]:
        return self.items["trigger"]

    @property
    def notifiers(self) -> dict[str, Item]:
        return self.items["notifier"]

    @property
    def settings(self) -> dict[str, Item]:
        return self.items["settings"]

    def add(self, item: Item) -> None:
        existing = self.items[item.kind].get(item.name)
        if existing is not None:
            raise RegistrationError(
                f"{item.kind} {item.name!r} from plugin {item.plugin} is already registered by "
                f"plugin {existing.plugin}; rename one of them or disable a plugin with "
                f"TASKENGINE_DISABLE_PLUGINS={item.plugin.name}"
            )
        self.items[item.kind][item.name] = item

    def callable_registrar(self, kind: str, plugin: PluginInfo) -> Callable[..., None]:
        """The ``register`` callback handed to a plugin's ``register_<kind>s`` hook."""

        def register(
            name: str,
            func: Callable[..., Any] | None = None,
            *,
            schema: dict | None = None,
            description: str = "",
            idempotent: bool = False,
            runs_on: str = "every_node",
        ) -> None:
            _check_name(kind, name, plugin)
            if not callable(func):
                raise RegistrationError(
                    f"{kind} {name!r} from plugin {plugin}: expected a callable, got {func!r}"
                )
            if runs_on not in ("every_node", "one_node") or (kind != "trigger" and runs_on != "every_node"):
                raise RegistrationError(
                    f"{kind} {name!r} from plugin {plugin}: runs_on={runs_on!r} is not known: "
                    f"a trigger runs on 'every_node' (the default) or 'one_node'")
            self.add(
                Item(kind, name, func, _checked_schema(kind, name, schema, plugin),
                     description or _first_line(func.__doc__), plugin, idempotent, runs_on=runs_on)
            )

        return register

    def settings_registrar(self, plugin: PluginInfo) -> Callable[..., None]:
        """The ``register`` callback handed to a plugin's ``register_settings`` hook."""

        def register(name: str, schema: dict, *, description: str = "",
                     check: Callable[[Any], Any] | None = None) -> None:
            _check_name("settings", name, plugin)
            if check is not None and not callable(check):
                raise RegistrationError(f"settings {name!r} from plugin {plugin}: check must be callable")
            self.add(
                Item("settings", name, None, _checked_schema("settings", name, schema, plugin),
                     description, plugin, check=check)
            )

        return register

    def by_plugin(self) -> dict[PluginInfo, list[Item]]:
        grouped: dict[PluginInfo, list[Item]] = {}
        for kind in KINDS:
            for item in self.items[kind].values():
                grouped.setdefault(item.plugin, []).append(item)
        return grouped


def _check_name(kind: str, name: Any, plugin: PluginInfo) -> None:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise RegistrationError(
            f"{kind} from plugin {plugin}: name must be a non-empty string without spaces, "
            f"got {name!r}"
        )


def _checked_schema(kind: str, name: str, schema: Any, plugin: PluginInfo) -> dict:
    if schema is None:
        return dict(_EMPTY_OBJECT_SCHEMA)
    if not isinstance(schema, dict):
        raise RegistrationError(
            f"{kind} {name!r} from plugin {plugin}: schema must be a JSON Schema object"
        )
    from taskengine_core.schema_checks import schema_problem

    problem = schema_problem(schema)
    if problem is not None:
        raise RegistrationError(f"{kind} {name!r} from plugin {plugin}: invalid JSON Schema: {problem}")
    return schema


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""
