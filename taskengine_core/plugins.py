"""The plugin manager factory: load entry points, honour the block list, survive broken plugins.

Nothing registers at import time. ``get_plugin_manager()`` builds a fresh manager on every call,
so each test (and each CLI invocation) gets its own.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable

import pluggy

from taskengine_core import DISTRIBUTION, __version__, hookspecs
from taskengine_core.entry_point_cache import FoundEntryPoint, entry_points
from taskengine_core.errors import RegistrationError
from taskengine_core.registry import PluginInfo, Registry

ENTRY_POINT_GROUP = "taskengine"
DISABLE_ENV = "TASKENGINE_DISABLE_PLUGINS"


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; the engine carries on without it."""


@dataclass
class BrokenPlugin:
    name: str
    distribution: str
    error: str

    def advice(self) -> str:
        return (
            f"plugin {self.name!r} from distribution {self.distribution!r} failed to load: "
            f"{self.error}. Remove it with 'taskengine uninstall {self.distribution}' or skip it "
            f"with {DISABLE_ENV}={self.name}"
        )


@dataclass
class PluginManager:
    """A pluggy manager plus what we learned while loading it."""

    pm: pluggy.PluginManager
    info: dict[str, PluginInfo] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    _registry: Registry | None = None

    @property
    def hook(self):
        return self.pm.hook

    def registry(self) -> Registry:
        """Collect every plugin's items once; later calls return the same registry."""
        if self._registry is None:
            self._registry = build_registry(self)
        return self._registry

    def plugin_info(self, plugin: object) -> PluginInfo:
        name = self.pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))
        return self.info.get(name) or PluginInfo(name, "(not installed)", "")


def disabled_names(env: dict | None = None) -> set[str]:
    raw = (env if env is not None else os.environ).get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def get_plugin_manager(
    *, extra_plugins: Iterable[object] = (), load_entry_points: bool = True
) -> PluginManager:
    """Build a fresh plugin manager.

    :param extra_plugins: plugin objects (modules or instances) registered in addition to the
        installed entry points; used by the Python API and the tests.
    :param load_entry_points: load plugins installed under the ``taskengine`` entry-point group.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    manager = PluginManager(pm)
    manager.blocked = disabled_names()
    for name in manager.blocked:
        pm.set_blocked(name)
    from taskengine_core import builtin_hooks

    _register(manager, builtin_hooks, PluginInfo("core", DISTRIBUTION, __version__))
    if load_entry_points:
        _load_entry_points(manager)
    for plugin in extra_plugins:
        if pm.is_registered(plugin):
            continue  # an installed plugin's module, already loaded through its entry point
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        _register(manager, plugin, PluginInfo(name, "(not installed)", ""))
    return manager


def _register(manager: PluginManager, plugin: object, info: PluginInfo) -> None:
    """Register one plugin; one that implements a hook we do not know (a typo, a newer hook)
    is taken out again and reported as broken instead of breaking every command."""
    if manager.pm.is_blocked(info.name):
        return
    manager.pm.register(plugin, name=info.name)
    try:
        manager.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        manager.pm.unregister(plugin)
        broken = BrokenPlugin(info.name, info.distribution, f"PluginValidationError: {exc}")
        manager.broken.append(broken)
        warnings.warn(broken.advice(), PluginLoadWarning, stacklevel=3)
        return
    manager.info[info.name] = info


def installed_plugins() -> list[PluginInfo]:
    """The plugins installed and not disabled, from package metadata alone: nothing is imported."""
    blocked, found = disabled_names(), {}
    for ep in entry_points(ENTRY_POINT_GROUP):
        info = _entry_point_info(ep)
        if ep.name not in blocked and info.distribution not in blocked:
            found.setdefault(ep.name, info)
    return sorted(found.values(), key=lambda info: info.name)


def _entry_point_info(ep: FoundEntryPoint) -> PluginInfo:
    return PluginInfo(ep.name, ep.distribution, ep.version)


def _load_entry_points(manager: PluginManager) -> None:
    for ep in entry_points(ENTRY_POINT_GROUP):  # cached while no distribution changes
        info = _entry_point_info(ep)
        dist = info.distribution
        if ep.name in manager.blocked or dist in manager.blocked:
            continue
        if manager.pm.get_plugin(ep.name) is not None:
            continue  # the same distribution visible twice on sys.path
        try:
            plugin = ep.load()
            _register(manager, plugin, info)
        except Exception as exc:  # noqa: BLE001 - a third-party plugin may raise anything
            broken = BrokenPlugin(ep.name, dist, f"{type(exc).__name__}: {exc}")
            manager.broken.append(broken)
            warnings.warn(broken.advice(), PluginLoadWarning, stacklevel=2)


def build_registry(manager: PluginManager) -> Registry:
    """Call every registration hook through pluggy's own call loop (so ``wrapper=True``
    implementations run around the others, as in any hook call); each item is credited to the
    plugin whose implementation registered it."""
    registry = Registry()
    registry.plugin_secret_schemes = any(
        manager.plugin_info(impl.plugin).name != "core"
        for impl in manager.pm.hook.resolve_secret.get_hookimpls())
    for hook_name, kind in (
        ("register_actions", "action"),
        ("register_triggers", "trigger"),
        ("register_notifiers", "notifier"),
        ("register_settings", "settings"),
    ):
        _RegistrationCall(manager, registry, kind).call(getattr(manager.pm.hook, hook_name))
    return registry


class _RegistrationCall:
    """One registration hook call. pluggy calls the newest plugin first, but the first plugin
    registered (the core, then installed plugins, then extras) keeps a name and a later
    duplicate is reported against its own plugin, whatever the call order."""

    def __init__(self, manager: PluginManager, registry: Registry, kind: str) -> None:
        self.manager, self.registry, self.kind = manager, registry, kind
        self.current: list[PluginInfo] = []  # whose implementation is running
        self.order = {name: n for n, name in enumerate(manager.info)}
        self.failed: set[str] = set()

    def call(self, caller) -> None:
        originals = [(impl, impl.function) for impl in caller.get_hookimpls()]
        for impl, function in originals:
            info = self.manager.plugin_info(impl.plugin)
            if impl.wrapper:
                impl.function = self._wrapper(function, info)
            elif not impl.hookwrapper:
                impl.function = self._plain(function, info)
        try:
            caller(register=self.register)
        except Exception as exc:  # noqa: BLE001 - a wrapper failed; it is reported already
            if not self.failed:
                self.broken(self.current[-1] if self.current else PluginInfo("?", "(unknown)", ""), exc)
        finally:
            for impl, function in originals:
                impl.function = function

    def register(self, name, *args, **kwargs) -> None:
        info = self.current[-1] if self.current else PluginInfo("?", "(unknown)", "")
        registrar = (self.registry.settings_registrar(info) if self.kind == "settings"
                     else self.registry.callable_registrar(self.kind, info))
        existing = self.registry.items[self.kind].get(name) if isinstance(name, str) else None
        if existing is not None and self._rank(existing.plugin) > self._rank(info):
            # registered earlier in this call but by a plugin that came later: it yields
            del self.registry.items[self.kind][name]
            try:
                registrar(name, *args, **kwargs)
            except Exception:
                self.registry.items[self.kind][name] = existing
                raise
            try:
                self.registry.add(existing)
            except RegistrationError as exc:
                self.broken(existing.plugin, exc)
            return
        registrar(name, *args, **kwargs)

    def _rank(self, info: PluginInfo) -> int:
        return self.order.get(info.name, len(self.order))

    def broken(self, info: PluginInfo, exc: BaseException) -> None:
        self.failed.add(info.name)
        broken = BrokenPlugin(info.name, info.distribution, f"{type(exc).__name__}: {exc}")
        self.manager.broken.append(broken)
        warnings.warn(broken.advice(), PluginLoadWarning, stacklevel=4)

    def _plain(self, function, info: PluginInfo):
        def attributed(*args, **kwargs):
            self.current.append(info)
            try:
                return function(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - report the plugin, keep the CLI working
                self.broken(info, exc)
                return None
            finally:
                self.current.pop()

        return attributed

    def _wrapper(self, function, info: PluginInfo):
        """A new-style wrapper, driven step by step so that what it registers before and
        after its ``yield`` is credited to its plugin."""

        def attributed(*args, **kwargs):
            self.current.append(info)
            try:
                steps = function(*args, **kwargs)
                value = next(steps)
            except Exception as exc:
                self.broken(info, exc)
                raise
            finally:
                self.current.pop()
            while True:
                try:
                    sent, failure = (yield value), None
                except BaseException as exc:  # noqa: BLE001 - handed to the wrapper, as pluggy does
                    sent, failure = None, exc
                self.current.append(info)
                try:
                    value = steps.throw(failure) if failure is not None else steps.send(sent)
                except StopIteration as stop:
                    return stop.value
                except Exception as exc:
                    if exc is not failure:
                        self.broken(info, exc)
                    raise
                finally:
                    self.current.pop()

        return attributed
