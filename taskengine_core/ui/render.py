"""Rendering pages: a Jinja2 environment over the package's templates, HTML-escaped, with the
filters pages use. Whatever a page shows of stored data passes :meth:`Renderer.masked`, so a
secret never reaches the browser."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from taskengine_core.secrets import redact_by_key

STATUS_CLASSES = {"succeeded": "ok", "failed": "bad", "interrupted": "bad", "cancelled": "warn",
                  "skipped": "warn", "pending": "wait", "running": "live"}


class Renderer:
    def __init__(self, engine) -> None:
        self._scrub = engine.secrets.redactor.scrub
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("taskengine_core.ui", "templates"),
            autoescape=True, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(when=when, masked=self.masked, pretty=self.pretty, seconds=seconds,
                                status_class=lambda status: STATUS_CLASSES.get(status or "", ""))

    def page(self, template: str, context: dict) -> str:
        return self.env.get_template(template).render(context)

    def masked(self, value: Any) -> Any:
        """Secret-looking keys masked and every resolved secret of this process scrubbed."""
        return self._scrub(redact_by_key(value))

    def pretty(self, value: Any) -> str:
        if value is None:
            return ""
        return json.dumps(self.masked(value), indent=2, sort_keys=True, ensure_ascii=False, default=str)


def when(value: str | None) -> Markup:
    """A stored UTC time as ``<time>``: readable as UTC, turned into the viewer's zone by ui.js."""
    if not value:
        return Markup("")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return escape(value)
    text = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="%s">%s</time>') % (value, text)


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"
