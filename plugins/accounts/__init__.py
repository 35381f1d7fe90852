"""Built-in plugin: account actions ``user.disable`` and ``user.enable``.

Backends: ``linux`` (shadow-utils ``usermod``, on this machine or on the passwd/shadow files
under ``settings.user.root``) and ``vergeos`` (the VergeOS API, ``PUT /api/v4/users/{key}``).
Each action reads the account's state first: a user already in the wanted state is success
with ``changed: false``. System accounts (uid under 1000, ``root``, VergeOS's built-in admin)
are refused unless the task says ``allow_system: true``. A user name that is not a valid name
is refused before anything runs, so event data cannot smuggle an option into ``usermod``.
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl

from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

__all__ = ["PARAMS_SCHEMA", "SETTINGS_SCHEMA", "register_actions", "register_settings"]


def _disable(params, ctx):
    """Disable a user account (lock and expire it), reading its state first."""
    from .action import set_account

    return set_account(params, ctx, enabled=False)


def _enable(params, ctx):
    """Enable a user account (unlock and unexpire it), reading its state first."""
    from .action import set_account

    return set_account(params, ctx, enabled=True)


@hookimpl
def register_actions(register) -> None:
    register("user.disable", _disable, schema=PARAMS_SCHEMA, idempotent=True,
             description="Disable a user account (linux: usermod --lock --expiredate; vergeos: API)")
    register("user.enable", _enable, schema=PARAMS_SCHEMA, idempotent=True,
             description="Enable a user account (linux: usermod --unlock, no expiry; vergeos: API)")


@hookimpl
def register_settings(register) -> None:
    register("user", SETTINGS_SCHEMA,
             description="user.* actions: the default backend, the linux root directory, the VergeOS API")
