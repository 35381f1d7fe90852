"""What templates see as ``event`` when a run has none (run by hand, fired by a schedule)."""

from __future__ import annotations

from typing import Any

from taskengine_core.template_sandbox import _Undefined


class AbsentEvent(_Undefined):
    """``event`` for a run that has none (run by hand, fired by a schedule): every attribute
    and item under it is undefined but defaultable, so ``{{ event.data.name | default('x') }}``
    renders ``x`` and ``{% if event %}`` is false; using a value without a default fails with
    a message naming the expression and why the run has no event."""

    __slots__ = ()

    def __init__(self, why: str, path: str = "event") -> None:
        hint = (f"'{path}' is undefined: this run has no event ({why}); give a default, e.g. "
                f"{{{{ {path} | default('...') }}}}, or test {{% if event %}}")
        super().__init__(hint=hint, obj=why, name=path)

    def __getattr__(self, name: str) -> "AbsentEvent":
        if name[:2] == "__":
            raise AttributeError(name)
        return AbsentEvent(self._undefined_obj, f"{self._undefined_name}.{name}")

    def __getitem__(self, key: Any) -> "AbsentEvent":
        return AbsentEvent(self._undefined_obj, f"{self._undefined_name}[{key!r}]")

    def __bool__(self) -> bool:
        return False
