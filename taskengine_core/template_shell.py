"""Template values in shell command lines: quoted for where they land, or refused.

A parameter that a shell runs (``command.run``'s ``shell:``, or the script after ``sh -c`` in
``argv``) is rendered with every ``{{ value }}`` replaced by a placeholder. The rendered text,
which then holds only what the rule file wrote, is read as ``/bin/sh`` reads it, and each
placeholder becomes its value quoted for the place it stands:

* outside quotes: one single-quoted word (``shlex.quote``);
* inside ``'...'``: the text with each ``'`` written as ``'\\''``;
* inside ``"..."``: the text with ``\\``, ``"``, ``$`` and backquote escaped.

A value is refused (:class:`ShellUnsafe`) where no quoting can keep it data: as the command
name (it would choose the program), as a redirection target (it would choose the file),
inside ``$(...)`` or backquotes (run as a command), in a comment (a newline in the value would
end it), after a here-document ``<<`` or right after a backslash; and as an argument of a
program that runs its arguments as shell code (``ssh``, ``sh -c``, ``eval``...) unless the
template quoted it for that second shell with ``shell_quote``. So event data never becomes
shell code, however the template is written.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping
from typing import Any

from jinja2 import nodes
from markupsafe import soft_str

OPEN, CLOSE = "\ue000", "\ue001"  # private-use characters: never in a rule file's text
RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for",
                      "case", "esac", "!", "{", "}", "time", "exec", "eval", "command", "env",
                      "sudo", "nohup", "xargs"})  # the last few run their first argument
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
# programs that hand their arguments to a shell again: values need shell_quote for that shell
CODE_RUNNERS = SHELLS | {"eval", "ssh", "su", "watch", "xargs", "parallel", "runuser"}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_DOUBLE_QUOTED_SPECIAL = re.compile(r'([\\"$`])')


class ShellUnsafe(Exception):
    """A template value stands where quoting cannot keep it from being shell code."""


class ShellQuoted(str):
    """What the ``shell_quote`` filter returns: ``raw`` quoted as one shell word."""

    raw: str

    def __new__(cls, raw: str) -> "ShellQuoted":
        quoted = super().__new__(cls, shlex.quote(raw))
        quoted.raw = raw
        return quoted


def shell_quote(value: Any) -> ShellQuoted:
    """The ``shell_quote`` filter: ``value`` as one single-quoted shell word."""
    if isinstance(value, ShellQuoted):
        return value
    return ShellQuoted(soft_str(value))


class Placeholders:
    """Collects the values of one shell render; each gets a placeholder no data can forge."""

    def __init__(self) -> None:
        self.nonce = str(secrets.randbelow(10**12))
        self.values: list[tuple[str, str | None]] = []  # (text, what shell_quote quoted)
        self._pattern = re.compile(f"{OPEN}{self.nonce}:(\\d+){CLOSE}")

    def mark(self, value: Any) -> str:
        # a shell_quote'd value keeps both forms: its text for an ordinary argument, its quoted
        # form (quoted again here) for a program that hands it to a second shell (ssh, sh -c)
        raw = self.resolve(value.raw) if isinstance(value, ShellQuoted) else None
        self.values.append((self.resolve(soft_str(value)), raw))
        return f"{OPEN}{self.nonce}:{len(self.values) - 1}{CLOSE}"

    def resolve(self, text: str) -> str:
        """``text`` with the placeholders inside it (a ``{% set %}`` block's) as plain text:
        the whole block is then one value."""
        if OPEN not in text:
            return text
        return self._pattern.sub(lambda m: self.values[int(m.group(1))][0], text)

    def assemble(self, text: str) -> str:
        """The command line: each placeholder replaced by its value, quoted for its place."""
        parts = self._pattern.split(text)
        if any(OPEN in p or CLOSE in p for p in parts[::2]):
            raise ShellUnsafe("a filter altered a template value's placeholder; quote values with "
                              "shell_quote instead of transforming the command line")
        scanner, out = _Scanner(), []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                scanner.feed(part)
                out.append(part)
            else:
                text, raw = self.values[int(part)]
                out.append(scanner.value(text, raw))
        return "".join(out)


def static_problem(pieces: list[str | bool | None]) -> str | None:
    """Check a template's literal text without rendering it: ``None`` where a value goes,
    ``True`` where a ``shell_quote``'d value goes."""
    scanner = _Scanner()
    try:
        for piece in pieces:
            if piece is None:
                scanner.value("x", None)
            elif piece is True:
                scanner.value("'x'", "x")
            else:
                scanner.feed(piece)
    except ShellUnsafe as exc:
        return str(exc)
    return None


class _Scanner:
    """Follows ``/bin/sh``'s quoting through literal text, enough to place a value safely."""

    def __init__(self) -> None:
        self.quote: str | None = None
        self.escaped = self.comment = self.backtick = self.heredoc = False
        self.subst = 0  # depth of $( ... )
        self.command_start = True  # the next word names a command
        self.command: str | None = None  # the current command's name
        self.redirect = self.redirect_word = False  # after < or >: the word names a file
        self.word: str | None = None  # the word being read (None: between words)
        self.first_word = False  # ...and whether it is a command's name
        self.prev = ""

    def feed(self, text: str) -> None:
        for c in text:
            self._char(c)
            self.prev = c

    def _begin(self) -> None:
        if self.word is None:
            self.word, self.first_word, self.command_start = "", self.command_start, False
            self.redirect_word, self.redirect = self.redirect, False

    def _end(self) -> None:
        if self.word is not None:
            if self.first_word and (self.word in RESERVED or _ASSIGNMENT.match(self.word)):
                self.command_start = True  # `if x`, `A=1 cmd`, `env cmd`: a command follows
            elif self.first_word:
                self.command = self.word.rsplit("/", 1)[-1].strip("'\"")
            self.word = None

    def _char(self, c: str) -> None:
        if self.comment:
            if c == "\n":
                self.comment, self.command_start = False, True
            return
        if self.escaped:
            self.escaped = False
            self._add(c)
            return
        if self.quote == "'":
            self.quote = None if c == "'" else self.quote
            self._add(c)
            return
        if c == "\\":
            self.escaped = True
            self._begin()
            return
        if c == "`":
            self.backtick = not self.backtick
        elif c == "(" and self.prev == "$":
            self.subst += 1
        elif c == ")" and self.subst:
            self.subst -= 1
        elif self.quote == '"':
            self.quote = None if c == '"' else self.quote
        elif self.subst or self.backtick:
            pass  # inside a command substitution: values here are refused anyway
        elif c in "'\"":
            self.quote = c
        elif c == "#" and self.word is None:
            self.comment = True
            return
        elif c in " \t":
            self._end()
            return
        elif c in "\n;&|()":
            self._end()
            self.command_start, self.command = True, None
            return
        elif c in "<>":
            if c == "<" and self.prev == "<":
                self.heredoc = True
            self._end()
            self.redirect = True
            return
        self._add(c)

    def _add(self, c: str) -> None:
        if self.quote is None and self.word is None and c in " \t":
            return
        self._begin()
        self.word += c

    def value(self, text: str, quoted_raw: str | None) -> str:
        """``text`` quoted for where the scan stands; ``quoted_raw``: the value had gone
        through ``shell_quote`` (``text`` is then its quoted form) and was this before."""
        where = None
        if self.comment:
            where = "inside a comment (#...), which a newline in the value would end"
        elif self.heredoc:
            where = "after a here-document (<<), whose text the shell expands"
        elif self.subst or self.backtick:
            where = "inside $(...) or `...`, whose text the shell runs as a command"
        elif self.escaped:
            where = "right after a backslash"
        elif self.quote is None and (self.word is None and self.command_start or (
                self.word is not None and self.first_word and not _ASSIGNMENT.match(self.word))):
            where = "as the command name: event data must not choose the program"
        elif self.word is None and self.redirect or self.word is not None and self.redirect_word:
            where = "as a redirection target: event data must not choose the file"
        elif self.command in CODE_RUNNERS and quoted_raw is None:
            raise ShellUnsafe(f"a template value is an argument of {self.command!r}, which runs it "
                              "as shell code again; write {{ value | shell_quote }} to quote it "
                              "for that shell too")
        if where:
            raise ShellUnsafe(f"a template value stands {where}; put values where an argument "
                              "goes (taskengine quotes them), or use 'argv' instead of 'shell'")
        raw = text if quoted_raw is None or self.command in CODE_RUNNERS else quoted_raw
        if self.quote == "'":
            return raw.replace("'", "'\\''")
        if self.quote == '"':
            return _DOUBLE_QUOTED_SPECIAL.sub(r"\\\1", raw)
        self._begin()
        self.word += "x"
        return shlex.quote(raw)


# -- which parameters a shell runs -----------------------------------------------------------

TEMPLATE_KEYWORD = "x-taskengine-template"  # a parameter schema's "shell" or "argv"
_SHELL_FLAG = re.compile(r"-[A-Za-z]*c[A-Za-z]*")


def template_modes(schema: Mapping | None) -> dict[str, str]:
    """``{parameter: "shell" | "argv"}`` for the top-level parameters ``schema`` marks."""
    properties = (schema or {}).get("properties") or {}
    return {name: sub[TEMPLATE_KEYWORD] for name, sub in properties.items()
            if isinstance(sub, Mapping) and sub.get(TEMPLATE_KEYWORD) in ("shell", "argv")}


def _program(item: Any) -> str | None:
    if not isinstance(item, str) or "{{" in item or "{%" in item:
        return None
    return item.rsplit("/", 1)[-1]


def shell_script_index(argv: list) -> int | None:
    """In ``[sh, -c, SCRIPT, ...]`` (any shell, ``-ec`` and the like too, also after a literal
    wrapper such as ``[sudo, -u, app, bash, -c, SCRIPT]``), SCRIPT's index."""
    for k, item in enumerate(argv):
        program = _program(item)
        if program is None:
            return None
        if program in SHELLS:
            break
    else:
        return None
    for j in range(k + 1, len(argv) - 1):
        item = argv[j]
        if not isinstance(item, str) or not item.startswith("-"):
            return None
        if _SHELL_FLAG.fullmatch(item):
            return j + 1
    return None


def runs_arguments_as_code(argv: list) -> str | None:
    """The program, when ``argv`` starts with one that hands its arguments to a shell again
    (``ssh host CMD...``, ``su -c CMD``, ``watch CMD``): its templated arguments must be
    ``shell_quote``'d."""
    program = _program(argv[0]) if argv else None
    return program if program in CODE_RUNNERS - SHELLS else None


def unquoted_value_problem(program: str) -> str:
    return (f"{program!r} runs its arguments as shell code again; write "
            "{{ value | shell_quote }} for each value in them")


def literal_pieces(node: nodes.Node, out: list) -> list:
    """A template's output in source order: literal text, None where a value goes (True
    where that value is ``shell_quote``'d)."""
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Output):
            for part in child.nodes:
                if isinstance(part, nodes.TemplateData):
                    out.append(part.data)
                elif isinstance(part, nodes.Const):
                    out.append(str(part.value))
                else:
                    out.append(isinstance(part, nodes.Filter) and part.name == "shell_quote" or None)
        elif isinstance(child, (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)):
            continue  # their text reaches the output as one value, or through a filter
        elif isinstance(child, nodes.Stmt):
            literal_pieces(child, out)
    return out
