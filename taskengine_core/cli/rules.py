"""``taskengine rules``: offline tests of rule files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from taskengine_core.cli._app import App, pass_app


@click.group()
def rules() -> None:
    """Test rule files offline: given events or times, the tasks expected to fire."""


@rules.command("test")
@click.argument("cases_file", metavar="CASES.yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rules", "rule_paths", multiple=True, metavar="PATH", type=click.Path(exists=True, path_type=Path),
              help="Rule files or folders to test (repeatable); default: the cases file's 'rules:'.")
@click.option("--json", "as_json", is_flag=True, help="Print each case's result as JSON.")
@pass_app
def rules_test(app: App, cases_file: Path, rule_paths: tuple[Path, ...], as_json: bool) -> None:
    """Run the cases in CASES.yaml against the rule files. Each case gives an event (type and
    data) or a time (for schedules), and the tasks expected to fire, optionally with their
    rendered parameters. Uses the real loader, evaluator and templates on a scratch database;
    no action runs. Exits 1 with a diff if any case fails."""
    from taskengine_core.rule_tests import CasesFileError, load_cases, run_cases

    try:
        file_rules, cases = load_cases(cases_file)
    except CasesFileError as exc:
        raise click.UsageError(str(exc)) from None
    paths = list(rule_paths) or file_rules
    if not paths:
        raise click.UsageError(f"{cases_file}: name the rule files to test with 'rules:' in the file "
                               "or with --rules PATH")
    results = run_cases(paths, cases, app.registry)
    failed = [r for r in results if not r.passed]
    if as_json:
        click.echo(json.dumps([{"name": r.name, "passed": r.passed, "expected": r.expected,
                                "actual": r.actual, "notes": r.notes} for r in results],
                              indent=2, default=str, ensure_ascii=False))
    else:
        for result in results:
            click.echo(f"{'ok  ' if result.passed else 'FAIL'}  {result.name}")
            if not result.passed:
                for line in result.diff().splitlines():
                    click.echo(f"      {line}")
                for note in result.notes:
                    click.echo(f"      note: {note}")
    summary = f"{len(results) - len(failed)} of {len(results)} cases passed"
    if failed:
        raise click.ClickException(summary + f"; failed: {', '.join(r.name for r in failed)}")
    click.echo(summary, err=True)
