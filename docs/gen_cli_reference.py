"""Render docs/cli.md from the click command tree of ``taskengine``.

    python docs/gen_cli_reference.py           # rewrite docs/cli.md
    python docs/gen_cli_reference.py --check   # exit 1 if the file is out of date

The tree is walked the way ``taskengine --help`` sees it: lazily loaded command groups through
``cli.get_command(ctx, name)``, and the commands that the plugins shipped with taskengine add
through the ``register_commands`` hook. Third-party plugins installed on this machine are left
out, so the output is the same everywhere.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Iterator

import click

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "cli.md"
BUILTIN_DISTRIBUTION = "taskengine-core"

INTRO = """\
Every command and option of `taskengine`, generated from the command tree itself (`taskengine
COMMAND --help` shows the same text). Conventions that hold for every command:

- `--db PATH` (before the command: `taskengine --db /srv/te.db logs`) picks the SQLite
  database, `--db postgresql://USER@HOST:PORT/DB` a PostgreSQL one (`pip install
  'taskengine-core[postgres]'`); the environment variable `TASKENGINE_DB` does the same. Without either, the database
  is `$TASKENGINE_HOME/taskengine.db`, else `taskengine.db` in the user data directory
  (see [operations.md](operations.md#where-the-database-lives)).
- Listings print an aligned table; `--json` prints JSON instead (every column, machine-readable).
- Data goes to stdout, messages (progress, summaries, warnings) to stderr.
- Exit status: 0 success, 1 failure (a bad rule file, a failed run, a missing object),
  2 usage error (an unknown option, a bad `KEY=VALUE`).
- Expected failures print one line without a traceback; `TASKENGINE_DEBUG=1` adds it.
- Plugins can add commands (the `register_commands` hook); `taskengine --help` lists them with
  the built-in ones.
"""


def builtin_app():
    """The CLI's per-invocation state, with only the plugins shipped with taskengine loaded."""
    os.environ.pop("TASKENGINE_DISABLE_PLUGINS", None)
    from taskengine_core.cli._app import App
    from taskengine_core.plugins import get_plugin_manager

    manager = get_plugin_manager()
    for name, info in list(manager.info.items()):
        if info.distribution != BUILTIN_DISTRIBUTION:
            manager.pm.unregister(name=name)
            del manager.info[name]
    return App(_manager=manager)


def fresh_root() -> click.Group:
    """A copy of the top-level group without commands a plugin may have added earlier in this
    process (``register_commands`` adds to the group object itself)."""
    from taskengine_core.cli import cli

    root = copy.copy(cli)
    root.commands = {}
    root._plugins_added = False
    return root


def walk(app=None) -> Iterator[tuple[click.Context, click.Command]]:
    """Every (context, command) of the tree, depth first, the root first."""
    app = app or builtin_app()
    root = fresh_root()
    ctx = click.Context(root, info_name="taskengine", obj=app)
    root.get_help(ctx)  # listing the commands is what makes plugins add theirs
    yield from _walk(ctx, root)


def _walk(ctx: click.Context, command: click.Command):
    yield ctx, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(click.Context(sub, info_name=name, parent=ctx, obj=ctx.obj), sub)


def command_paths(app=None) -> list[str]:
    """``["taskengine", "taskengine apply", ..., "taskengine logs prune", ...]``."""
    return [ctx.command_path for ctx, _ in walk(app)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _help_text(command: click.Command) -> str:
    text = (command.help or "").split("\f", 1)[0]
    paragraphs = []
    for block in text.strip().split("\n\n"):
        lines = [line.strip() for line in block.splitlines() if line.strip() != "\b"]
        paragraphs.append(" ".join(lines))
    return "\n\n".join(p for p in paragraphs if p)


def render_command(ctx: click.Context, command: click.Command) -> Iterator[str]:
    depth = ctx.command_path.count(" ")
    yield f'<a id="{ctx.command_path.replace(" ", "-")}"></a>'
    yield ""
    yield f"{'#' * min(2 + max(depth - 1, 0), 4)} `{ctx.command_path}`"
    yield ""
    yield "```"
    yield f"{ctx.command_path} {' '.join(command.collect_usage_pieces(ctx))}".rstrip()
    yield "```"
    yield ""
    help_text = _help_text(command)
    if help_text:
        yield help_text
        yield ""
    options = [p for p in command.get_params(ctx)
               if isinstance(p, click.Option) and not p.hidden and "--help" not in p.opts]
    if options:
        yield "| Option | Description |"
        yield "|---|---|"
        for option in options:
            record = option.get_help_record(ctx)
            if record is None:
                continue
            names, text = record
            yield f"| `{_cell(names)}` | {_cell(text)} |"
        yield ""
    if isinstance(command, click.Group):
        yield "| Subcommand | Summary |"
        yield "|---|---|"
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            anchor = f"{ctx.command_path} {name}".replace(" ", "-")
            yield f"| [`{name}`](#{anchor}) | {_cell(sub.get_short_help_str(200))} |"
        yield ""


def render(app=None) -> str:
    lines = ["# Command-line reference", "",
             "<!-- Generated by docs/gen_cli_reference.py from the click tree of "
             "taskengine_core.cli.cli; do not edit by hand. -->", "", INTRO]
    for ctx, command in walk(app):
        lines += list(render_command(ctx, command))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python docs/gen_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
