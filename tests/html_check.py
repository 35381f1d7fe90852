"""Structural checks of the dashboard's HTML, run on every page the tests fetch.

Not a full W3C validator (none runs offline here), but the errors such a checker reports for
server-rendered pages: elements that do not close or close out of order, duplicate ids, labels
and htmx targets pointing at ids that do not exist, forms that post without a CSRF token, and
anything the page's Content-Security-Policy would block (inline scripts, style attributes,
outside resources)."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr",
        "path", "rect"}
OPTIONAL_END = {"p", "li", "dt", "dd", "tr", "td", "th", "option", "thead", "tbody"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int]] = []
        self.problems: list[str] = []
        self.ids: dict[str, int] = {}
        self.label_fors: list[tuple[str, int]] = []
        self.targets: list[tuple[str, int]] = []
        self.doctype = False
        self.body_csrf = False
        self.forms: list[dict] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs) -> None:
        line = self.getpos()[0]
        attrs = dict(attrs)
        if tag not in VOID:
            self.stack.append((tag, line))
        if "id" in attrs:
            if attrs["id"] in self.ids:
                self.problems.append(f"line {line}: duplicate id {attrs['id']!r} (first on line {self.ids[attrs['id']]})")
            self.ids[attrs["id"]] = line
        if "style" in attrs:
            self.problems.append(f"line {line}: style attribute (blocked by the CSP)")
        if any(name.startswith("on") for name in attrs):
            self.problems.append(f"line {line}: inline event handler on <{tag}> (blocked by the CSP)")
        if tag == "script" and not attrs.get("src"):
            self.problems.append(f"line {line}: inline <script> (blocked by the CSP)")
        for name in ("src", "href", "action"):
            value = attrs.get(name) or ""
            if value.startswith(("http:", "https:", "//")):
                self.problems.append(f"line {line}: {name}={value!r} loads from elsewhere")
        if tag == "label" and attrs.get("for"):
            self.label_fors.append((attrs["for"], line))
        if attrs.get("hx-target", "").startswith("#"):
            self.targets.append((attrs["hx-target"][1:], line))
        if tag == "body" and "X-CSRF-Token" in (attrs.get("hx-headers") or ""):
            self.body_csrf = True
        if tag == "form":
            self.forms.append({"line": line, "method": (attrs.get("method") or "get").lower(),
                               "action": attrs.get("action", ""), "csrf": False})
        if tag == "input" and attrs.get("name") == "csrf" and self.forms:
            self.forms[-1]["csrf"] = True
        if tag == "img" and "alt" not in attrs:
            self.problems.append(f"line {line}: <img> without alt")

    def handle_endtag(self, tag: str) -> None:
        line = self.getpos()[0]
        if tag in VOID:
            return
        while self.stack and self.stack[-1][0] != tag and self.stack[-1][0] in OPTIONAL_END:
            self.stack.pop()
        if not self.stack or self.stack[-1][0] != tag:
            opened = self.stack[-1] if self.stack else None
            self.problems.append(f"line {line}: </{tag}> closes {'<%s> of line %d' % opened if opened else 'nothing'}")
            return
        self.stack.pop()


def check_page(html: str) -> None:
    """Raise AssertionError listing every structural problem of a full page."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    problems = list(checker.problems)
    if not checker.doctype:
        problems.append("no <!DOCTYPE html>")
    unclosed = [f"<{tag}> of line {line}" for tag, line in checker.stack if tag not in OPTIONAL_END]
    if unclosed:
        problems.append("never closed: " + ", ".join(unclosed))
    for ref, line in checker.label_fors:
        if ref not in checker.ids:
            problems.append(f"line {line}: <label for={ref!r}> names no element")
    for ref, line in checker.targets:
        if ref not in checker.ids:
            problems.append(f"line {line}: hx-target #{ref} names no element")
    for form in checker.forms:
        if form["method"] == "post" and not form["csrf"] and form["action"] != "/ui/login":
            problems.append(f"line {form['line']}: a POST form to {form['action']} without a csrf field")
    assert not problems, "HTML problems:\n" + "\n".join(problems)
