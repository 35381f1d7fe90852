"""``user.disable`` and ``user.enable``: check the name, pick the backend, read the state,
refuse system accounts, change only what differs, and confirm the change."""

from __future__ import annotations

from taskengine_core.errors import ActionError

from .names import checked_name


def set_account(params: dict, ctx, *, enabled: bool) -> dict:
    settings = ctx.settings or {}
    backend_name = params.get("backend") or settings.get("backend") or "linux"
    name = checked_name(params.get("user"), backend_name)
    backend = _backend(backend_name, settings)
    account = backend.read(name)
    if backend.is_system(account) and not params.get("allow_system"):
        raise ActionError(f"refusing to {'enable' if enabled else 'disable'} system account {name!r} "
                          f"({_describe(account)}); set allow_system: true on the task if this is meant",
                          retryable=False)
    before = account.state()
    wanted = (lambda s: s["enabled"]) if enabled else (lambda s: _disabled(s))
    if wanted(before):
        return {"user": name, "backend": backend_name, "on": backend.describe(), "changed": False, **before}
    after = backend.change(account, enabled, ctx.time_left()).state()
    if not wanted(after):
        raise ActionError(f"{name!r} is still {'disabled' if enabled else 'enabled'} after the change "
                          f"({after}); check {backend.describe()}", retryable=False)
    return {"user": name, "backend": backend_name, "on": backend.describe(), "changed": True, **after}


def _disabled(state: dict) -> bool:
    if "locked" in state:  # linux: locked and expired
        return state["locked"] and state["expired"]
    return not state["enabled"]


def _describe(account) -> str:
    return f"uid {account.uid}" if hasattr(account, "uid") else f"key {account.key}"


def _backend(name: str, settings: dict):
    if name == "vergeos":
        from .vergeos import VergeOSAccounts

        return VergeOSAccounts(settings)
    from .linux import LinuxAccounts

    return LinuxAccounts(settings)
