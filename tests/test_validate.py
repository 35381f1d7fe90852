"""`taskengine validate`: every problem reported at once, as FILE:LINE:COL  PATH  MESSAGE."""

from __future__ import annotations

GOOD = """
settings:
  timezone: Europe/Berlin
schedules:
  nightly: {cron: "0 2 * * *"}
tasks:
  backup:
    action: command.run
    with: {argv: [echo, backup]}
    schedules: [nightly]
  greet-user:
    action: command.run
    with: {argv: [echo, "hello {{ event.data.user }}"]}
events:
  user-login: {on: user.login, when: {data.user: alice}, tasks: [greet-user]}
"""


def test_a_good_file_validates(run_cli, write_rules):
    path = write_rules(GOOD)
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output
    assert result.stderr == "ok: 1 schedules, 0 webhooks, 2 tasks, 1 events\n"
    assert result.stdout == ""


def test_yaml_on_and_off_stay_strings(run_cli, write_rules):
    path = write_rules("""
        events:
          e: {on: vm.off, tasks: [t]}
        tasks:
          t: {action: command.run, with: {argv: [echo, on, off, yes, "17:00"]}}
    """)
    assert run_cli("validate", path).exit_code == 0


def test_broken_yaml_names_the_line(run_cli, write_rules):
    path = write_rules("tasks:\n  a: {action: command.run\n  b: 1\n")
    result = run_cli("validate", path)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:3:4  (document)  YAML syntax error: while parsing a flow mapping did not find expected ',' or '}}'",
        "Error: 1 error found",
    ]


def test_every_schema_error_is_reported_with_its_position(run_cli, write_rules):
    path = write_rules("""
        tasks:
          no-action: {with: {argv: [echo]}}
          typo:
            action: command.run
            with: {argv: [echo]}
            enabeld: false
          bad-timeout:
            action: command.run
            with: {argv: [echo]}
            timeout: soon
          bad-policy:
            action: command.run
            with: {argv: [echo]}
            concurrency: sometimes
        taks: {}
    """)
    result = run_cli("validate", path)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:2:3  tasks.no-action  missing required key 'action'",
        f"{path}:6:5  tasks.typo.enabeld  unknown key 'enabeld'; expected one of: action, concurrency, "
        "delete_after_run, description, enabled, events, notify, retry, schedules, tags, timeout, with",
        f"{path}:10:5  tasks.bad-timeout.timeout  expected a duration of at most 100 years: seconds, or a string such as "
        "90s, 15m, 2h, 30d, 1w, 1h30m; got a string 'soon'",
        f"{path}:14:5  tasks.bad-policy.concurrency  expected one of: parallel, queue, skip, replace; "
        "got a string 'sometimes'",
        f"{path}:15:1  taks  unknown section 'taks'; expected one of: settings, schedules, webhooks, tasks, events",
        "Error: 5 errors found",
    ]


def test_unknown_action_and_bad_parameters(run_cli, write_rules):
    path = write_rules("""
        tasks:
          a: {action: vm.powr, with: {vm: x}}
          b: {action: command.run, with: {argv: []}}
          c: {action: command.run, with: {argv: ["{{ event.data.cmd }}"]}}
    """)
    result = run_cli("validate", path)
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}:2:7  tasks.a.action  unknown action 'vm.powr'; installed actions: ")
    assert "command.run" in lines[0] and lines[0].endswith(" (see 'taskengine plugins')")
    assert lines[1] == f"{path}:3:35  tasks.b.with.argv  expected at least 1 item, got 0"
    assert lines[-1] == "Error: 2 errors found"  # the templated argv of c is checked at run time


def test_dangling_references(run_cli, write_rules):
    path = write_rules("""
        schedules:
          nightly: {cron: "0 2 * * *"}
        tasks:
          a: {action: command.run, with: {argv: [echo]}, schedules: [nighty], events: [nope]}
        events:
          e: {on: x, tasks: [a, b]}
    """)
    result = run_cli("validate", path)
    assert result.stderr.splitlines() == [
        f"{path}:4:62  tasks.a.schedules[0]  task 'a' refers to schedule 'nighty', which is not "
        "defined; did you mean 'nightly'?",
        f"{path}:4:80  tasks.a.events[0]  task 'a' refers to event rule 'nope', which is not defined; "
        "define it under 'events:'",
        f"{path}:6:25  events.e.tasks[1]  event rule 'e' refers to task 'b', which is not defined; "
        "define it under 'tasks:'",
        "Error: 3 errors found",
    ]


def test_duplicate_names_across_files_and_keys(run_cli, write_rules):
    first = write_rules("tasks:\n  a: {action: command.run, with: {argv: [echo]}}\n", "a.yaml")
    second = write_rules(
        "tasks:\n  a: {action: command.run, with: {argv: [echo]}}\n"
        "  b:\n    action: command.run\n    action: command.run\n    with: {argv: [x]}\n", "b.yaml")
    result = run_cli("validate", first.parent)
    assert result.stderr.splitlines() == [
        f"{second}:2:3  tasks.a  task 'a' is already defined in {first}:2; names must be unique "
        "across all rule files",
        f"{second}:5:5  tasks.b.action  duplicate key 'action': each key may appear once in a mapping",
        "Error: 2 errors found",
    ]


def test_malformed_secret_references(run_cli, write_rules):
    path = write_rules("""
        tasks:
          a:
            action: command.run
            with:
              argv: [echo]
              env: {A: "${env:}", B: "${vault:x}", C: "${env:OK_NAME}", D: "${env:bad name}"}
    """)
    result = run_cli("validate", path)
    assert result.stderr.splitlines() == [
        f"{path}:6:13  tasks.a.with.env.A  malformed secret reference '${{env:}}': expected an "
        "environment variable name after 'env:'",
        f"{path}:6:27  tasks.a.with.env.B  malformed secret reference '${{vault:x}}': expected "
        "${env:NAME} or ${file:PATH}",
        f"{path}:6:65  tasks.a.with.env.D  malformed secret reference '${{env:bad name}}': expected an "
        "environment variable name after 'env:'",
        "Error: 3 errors found",
    ]


def test_bad_regex_and_bad_template_and_unknown_zone(run_cli, write_rules):
    path = write_rules("""
        settings: {timezone: Mars/Olympus}
        tasks:
          t: {action: command.run, with: {argv: ["{{ event.data.x "]}}
        events:
          e: {on: x, when: {data.host: {regex: "("}}, tasks: [t]}
    """)
    lines = run_cli("validate", path).stderr.splitlines()
    assert lines[0] == (
        f"{path}:1:12  settings.timezone  unknown time zone 'Mars/Olympus'; expected an IANA name "
        "such as Europe/Berlin"
    )
    assert lines[1] == (f"{path}:3:42  tasks.t.with.argv[0]  syntax error on line 1: unexpected end "
                        "of template, expected 'end of print statement'.")
    assert lines[2] == (f"{path}:5:14  events.e.when  path 'data.host': bad regex '(': missing ): (; "
                        "conditions use RE2 syntax, which matches in linear time and has no "
                        "backreferences (\\1) or lookaround ((?=...), (?<=...))")
    assert lines[-1] == "Error: 3 errors found"


def test_missing_path(run_cli, tmp_path):
    result = run_cli("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{tmp_path / 'nope.yaml'}  (document)  no such file or directory"


def test_validate_needs_a_path(run_cli):
    result = run_cli("validate")
    assert result.exit_code == 2
    assert "Missing argument 'PATHS...'" in result.stderr


def test_json_rule_files(run_cli, tmp_path):
    good = tmp_path / "r.json"
    good.write_text('{"tasks": {"a": {"action": "command.run", "with": {"argv": ["echo"]}}}}')
    assert run_cli("validate", good).exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"tasks": {"a": {"action": "command.run",}}}')
    result = run_cli("validate", bad)
    assert result.stderr.splitlines()[0] == f"{bad}:1:42  (document)  JSON syntax error: Expecting property name enclosed in double quotes"


def test_quoted_and_unquoted_dates_and_times_stay_text(write_rules):
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config

    path = write_rules("""
        tasks:
          t: {action: command.run, with: {argv: [echo, "2026-01-01 10:00", "02:46:13", 2026-01-01]}}
    """)
    config = load_config([path], get_plugin_manager().registry())
    assert config.tasks["t"].spec["with"]["argv"] == ["echo", "2026-01-01 10:00", "02:46:13", "2026-01-01"]


def test_a_duration_past_100_years_is_an_error_not_a_crash_later(run_cli, write_rules, db_path):
    """It used to pass validation and then overflow at run time, halting the evaluator."""
    from taskengine_core.store import Store

    Store(db_path).close()  # an existing database that the failed apply must leave unchanged
    path = write_rules("""
        tasks:
          t: {action: command.run, with: {argv: [echo]}, retry: {attempts: 2, max_backoff: 99999999999d}}
        events:
          big: {on: a, throttle: {window: 99999999999999d}, tasks: [t]}
          late: {on: a, delay: 1e20, tasks: [t]}
          fine: {on: a, delay: 36500d, tasks: [t]}
    """)
    result = run_cli("apply", path)
    assert result.exit_code == 1
    expected = "expected a duration of at most 100 years: seconds, or a string such as 90s, 15m, 2h, 30d, 1w, 1h30m; got "
    lines = result.stderr.splitlines()
    assert [line.split("  ", 2)[1:] for line in lines[:3]] == [
        ["tasks.t.retry.max_backoff", expected + "a string '99999999999d'"],
        ["events.big.throttle.window", expected + "a string '99999999999999d'"],
        ["events.late.delay", expected + "a number 1e+20"],
    ]
    assert lines[3:] == ["Error: 3 errors found"]
    assert run_cli("tasks", "list", "--json").stdout == "[]\n"


def test_secret_looking_names_that_are_not_literal_secrets_validate(run_cli, write_rules):
    """Paths under *_CREDENTIALS or *_PRIVATE_KEY, a value that holds a reference among other
    text, and a plain `key` (an object store's) are not literal secrets."""
    path = write_rules("""
        tasks:
          gcloud-sync:
            action: command.run
            with:
              argv: [gcloud, storage, rsync, /data, gs://bucket, "{{ event.data.key }}"]
              env:
                GOOGLE_APPLICATION_CREDENTIALS: /etc/gcp/service-account.json
                TLS_PRIVATE_KEY: /etc/ssl/private/client.pem
                Authorization: "Bearer ${env:API_TOKEN}"
                API_TOKEN: "{{ event.data.token }}"
                key: reports/x.csv
    """)
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.stderr
