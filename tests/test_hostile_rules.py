"""Rule files written to hurt: every one gets a FILE:LINE message, never a traceback or a hang,
and nothing is written to the database."""

from __future__ import annotations

import threading

import pytest

from conftest import dump_db


def _in_thread(func, *args):
    """Run ``func`` in a thread and wait generously; the test fails (not hangs) if it stalls."""
    box: dict = {}

    def target():
        try:
            box["result"] = func(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), f"{func.__name__} did not finish: it stalled"
    if "error" in box:
        raise box["error"]
    return box["result"]


def _refused(run_cli, path, db_path, *lines):
    """validate, apply and run --rules all refuse with exactly these problem lines."""
    before = dump_db(db_path)
    for command in (("validate", path), ("apply", path), ("run", "--rules", path)):
        result = run_cli(*command)
        assert result.exit_code == 1, (command, result.output)
        assert "Traceback" not in result.output
        got = result.stderr.splitlines()
        assert got[:-1] == list(lines), command
        assert got[-1].startswith("Error: ")
        if command[0] == "apply":
            assert dump_db(db_path) == before


# -- 2. regex conditions match in linear time ---------------------------------------------

def test_a_catastrophic_regex_is_evaluated_promptly_with_the_right_answer():
    from taskengine_core.conditions import compile_conditions

    condition = compile_conditions({"data.name": {"regex": "^(a+)+$"}})
    hostile = {"type": "x", "data": {"name": "a" * 40 + "!"}}  # Python's re: days
    fitting = {"type": "x", "data": {"name": "a" * 40}}
    assert _in_thread(condition.matches, hostile) is False
    assert _in_thread(condition.explain, hostile) == (
        f"data.name is {'a' * 40 + '!'!r}, expected to match regex '^(a+)+$'")
    assert _in_thread(condition.matches, fitting) is True


def test_a_regex_with_a_lone_surrogate_in_event_data_still_answers():
    from taskengine_core.conditions import compile_conditions

    condition = compile_conditions({"data.name": {"regex": "^x"}})
    assert condition.matches({"data": {"name": "x\ud800"}}) is True
    assert condition.matches({"data": {"name": "\ud800x"}}) is False


def test_patterns_re2_cannot_bound_are_refused_at_validate(run_cli, write_rules, db_path):
    path = write_rules(r"""
        tasks:
          t: {action: command.run, with: {argv: [echo]}}
        events:
          back: {on: x, when: {data.name: {regex: "(a)\\1"}}, tasks: [t]}
          ahead: {on: x, when: {data.name: {regex: "a(?=b)"}}, tasks: [t]}
    """)
    tail = ("; conditions use RE2 syntax, which matches in linear time and has no backreferences "
            "(\\1) or lookaround ((?=...), (?<=...))")
    _refused(run_cli, path, db_path,
             f"{path}:4:17  events.back.when  path 'data.name': bad regex '(a)\\\\1': "
             f"invalid escape sequence: \\1{tail}",
             f"{path}:5:18  events.ahead.when  path 'data.name': bad regex 'a(?=b)': "
             f"invalid perl operator: (?={tail}")


# -- 3. non-finite numbers -----------------------------------------------------------------

NOT_FINITE = ("expected a finite number, got {}: NaN and infinity (.nan, .inf, NaN, Infinity) "
              "are not allowed; write a number, or a duration such as 30s")


def test_nan_and_infinity_are_refused_in_every_duration_and_number(run_cli, write_rules, db_path):
    path = write_rules("""
        settings:
          retention: .nan
          ingress: {rate: .inf}
        webhooks:
          w: {url: "http://127.0.0.1:9/", timeout: .NaN}
        tasks:
          t:
            action: command.run
            with: {argv: [echo], timeout: -.inf}
            timeout: .nan
            retry: {attempts: 2, backoff: .inf}
        events:
          e: {on: x, delay: .nan, throttle: {window: .inf}, when: {data.n: {lt: .inf}}, tasks: [t]}
    """)
    nan, inf = NOT_FINITE.format("nan"), NOT_FINITE.format("inf")
    _refused(run_cli, path, db_path,
             f"{path}:2:3  settings.retention  {nan}",
             f"{path}:3:13  settings.ingress.rate  {inf}",
             f"{path}:5:35  webhooks.w.timeout  {nan}",
             f"{path}:9:26  tasks.t.with.timeout  {NOT_FINITE.format('-inf')}",
             f"{path}:10:5  tasks.t.timeout  {nan}",
             f"{path}:11:26  tasks.t.retry.backoff  {inf}",
             f"{path}:13:14  events.e.delay  {nan}",
             f"{path}:13:38  events.e.throttle.window  {inf}",
             f"{path}:13:69  events.e.when.data.n.lt  {inf}")


def test_nan_and_infinity_in_json_rule_files(run_cli, tmp_path, db_path):
    path = tmp_path / "rules.json"
    path.write_text('{"tasks": {"t": {"action": "command.run", "with": {"argv": ["echo"]},\n'
                    '  "timeout": NaN, "retry": {"backoff": Infinity}}}}\n')
    _refused(run_cli, path, db_path,
             f"{path}:2:3  tasks.t.timeout  {NOT_FINITE.format('nan')}",
             f"{path}:2:29  tasks.t.retry.backoff  {NOT_FINITE.format('inf')}")


@pytest.mark.parametrize("fast", [True, False])
def test_both_schema_checkers_refuse_non_finite_numbers(fast):
    """The check runs before fastjsonschema and jsonschema alike: a rendered parameter such as
    ``timeout: "{{ 'nan' | float }}"`` is refused as surely as one written in a file."""
    from taskengine_core.rules.messages import explain
    from taskengine_core.rules.schema_check import SchemaCheck

    check = SchemaCheck({"type": "object", "properties": {"timeout": {"type": "number", "minimum": 0}}})
    if not fast:
        check._fast_check = None  # jsonschema alone
    assert list(check.errors({"timeout": 5})) == []
    errors = list(check.errors({"timeout": float("nan")}))
    assert [(list(e.absolute_path), explain(e)[1]) for e in errors] == [
        (["timeout"], NOT_FINITE.format("nan"))]
    big = list(check.errors({"timeout": 10**30}))
    assert explain(big[0])[1] == ("number too large (31 digits); numbers must lie within "
                                  "±9223372036854775807")


# -- 4. alias bombs ------------------------------------------------------------------------

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_billion_laughs_file_is_refused_promptly(run_cli, tmp_path, db_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 600
    message = (f"{path}:6:4  (document)  YAML aliases here expand to more than 200,000 nodes "
               "(an alias bomb?); write the data out or use fewer nested aliases")
    result = _in_thread(run_cli, "validate", path)
    assert result.stderr.splitlines() == [message, "Error: 1 error found"]
    _refused(run_cli, path, db_path, message)


def test_the_slow_yaml_path_refuses_bombs_and_aliases_inside_their_own_anchor():
    """PyYAML reads the file when the fast parser cannot (and to find positions): it shares
    aliased objects, so the bomb must be counted before anything walks it."""
    from taskengine_core.rules.loader import _load_with_marks

    doc, problems = _in_thread(_load_with_marks, "bomb.yaml", BILLION_LAUGHS)
    assert doc is None and [str(p) for p in problems] == [
        "bomb.yaml:6:4  (document)  YAML aliases here expand to more than 200,000 nodes "
        "(an alias bomb?); write the data out or use fewer nested aliases"]
    doc, problems = _load_with_marks("loop.yaml", "tasks:\n  t: &loop {with: {x: *loop}}\n")
    assert doc is None and [str(p) for p in problems] == [
        "loop.yaml:2:19  (document)  an alias refers to the mapping or list that contains it"]


def test_ordinary_aliases_still_work(run_cli, write_rules):
    path = write_rules("""
        tasks:
          a: {action: command.run, with: {argv: &words [echo, a, b]}, timeout: 1m}
          b: {action: command.run, with: {argv: *words}}
    """)
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output


# -- 6. odd inputs that used to print a traceback ------------------------------------------

def test_a_json_number_with_thousands_of_digits(run_cli, tmp_path, db_path):
    path = tmp_path / "big.json"
    path.write_text('{"tasks": {"t": {"action": "command.run", "with": {"argv": ["echo"]},\n'
                    '  "timeout": ' + "9" * 5000 + '}}}\n')
    _refused(run_cli, path, db_path,
             f"{path}:2:3  tasks.t.timeout  number too large (5000 digits); numbers must lie "
             "within ±9223372036854775807")


@pytest.mark.parametrize("digits, shown", [(400, "400"), (5000, "5000")])
def test_a_yaml_number_too_large_for_a_float_or_for_text(run_cli, write_rules, db_path, digits, shown):
    path = write_rules(f"""
        tasks:
          t: {{action: command.run, with: {{argv: [echo]}}, timeout: {"9" * digits}}}
    """)
    _refused(run_cli, path, db_path,
             f"{path}:2:50  tasks.t.timeout  number too large ({shown} digits); numbers must "
             "lie within ±9223372036854775807")


def test_json_nested_past_pythons_recursion_limit(run_cli, tmp_path, db_path):
    path = tmp_path / "deep.json"
    path.write_text('{"tasks": {"t": {"action": "command.run", "with": {"argv": ["echo"], "x": '
                    + "[" * 100_000 + "]" * 100_000 + "}}}}")
    _refused(run_cli, path, db_path, f"{path}  (document)  nested more than 64 levels deep")


def test_yaml_nested_deeper_than_any_rule_file(run_cli, write_rules, db_path):
    body = "".join("  " * i + "k:\n" for i in range(70))
    path = write_rules("tasks:\n  t:\n    action: command.run\n    with:\n"
                       + "".join("    " + line + "\n" for line in body.splitlines()))
    result = run_cli("validate", path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "nested more than 64 levels deep; rule files are not that deep" in result.stderr


def test_tagged_values_binary_and_set(run_cli, write_rules, db_path):
    path = write_rules("""
        tasks:
          t: !!binary aGVsbG8=
          u: {action: command.run, with: {argv: [echo]}}
        events:
          e: !!set {a, b}
    """)
    _refused(run_cli, path, db_path,
             f"{path}:5:3  events.e  unsupported value: a set (!!set); rule files hold mappings, "
             "lists, text, numbers, true/false and null")
    path = write_rules("""
        tasks:
          t: just text
    """, name="text.yaml")
    _refused(run_cli, path, db_path, f"{path}:2:3  tasks.t  expected a mapping, got a string 'just text'")


def test_templates_nested_hundreds_deep(run_cli, write_rules, db_path):
    path = write_rules(f"""
        tasks:
          t: {{action: command.run, with: {{argv: [echo, "{{{{ {'(' * 2000}1{')' * 2000} }}}}"]}}}}
    """)
    _refused(run_cli, path, db_path,
             f"{path}:2:48  tasks.t.with.argv[1]  expressions nested too deeply (brackets or "
             "parentheses hundreds deep); simplify the template")


def test_a_lone_surrogate_in_a_json_string(run_cli, tmp_path, db_path):
    path = tmp_path / "surrogate.json"
    path.write_text('{"tasks": {"t": {"action": "command.run",\n  "with": {"argv": ["\\ud800"]}}}}')
    result = run_cli("validate", path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].endswith(
        "tasks.t.with.argv[0]  text holds '\\ud800', a lone surrogate, which is not valid "
        "Unicode; write the character itself or a valid \\u escape pair")
    _refused(run_cli, path, db_path, result.stderr.splitlines()[0])


def test_a_file_that_is_not_utf8(run_cli, tmp_path, db_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("tasks: {}\n# caf\xe9\n".encode("latin-1"))
    _refused(run_cli, path, db_path, f"{path}  (document)  cannot read file: not UTF-8 text (byte 15: "
             "invalid continuation byte); rule files are UTF-8 YAML or JSON")


# -- 7. duplicate keys ---------------------------------------------------------------------

def test_duplicate_keys_in_json_are_refused_with_their_line(run_cli, tmp_path, db_path):
    path = tmp_path / "dupes.json"
    path.write_text('{"tasks": {\n'
                    '  "t": {"action": "command.run", "with": {"argv": ["echo"]}},\n'
                    '  "t": {"action": "command.run", "with": {"argv": ["rm"], "argv": ["id"]}}\n'
                    '}}\n')
    _refused(run_cli, path, db_path,
             f"{path}:3:3  tasks.t  duplicate key 't': each key may appear once in a mapping",
             f"{path}:3:59  tasks.t.with.argv  duplicate key 'argv': each key may appear once in a mapping")


def test_duplicate_keys_in_yaml_are_refused_with_their_line(run_cli, write_rules, db_path):
    path = write_rules("""
        events:
          e: {on: x, on: y}
    """)
    _refused(run_cli, path, db_path,
             f"{path}:2:14  events.e.on  duplicate key 'on': each key may appear once in a mapping")


# -- end to end: the evaluator and `logs explain` on a hostile event -----------------------



def test_a_hostile_event_neither_stalls_the_evaluator_nor_logs_explain(applied, run_cli,
                                                                      engine_factory, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo, matched]}}
        events:
          aaa: {on: name.seen, when: {data.name: {regex: "^(a+)+$"}}, tasks: [t]}
    """)
    hostile = run_cli("emit", "name.seen", "name=" + "a" * 40 + "!").stdout.strip()
    fitting = run_cli("emit", "name.seen", "name=" + "a" * 40).stdout.strip()
    _in_thread(engine_factory().run_until_idle)
    import sqlite3

    rows = sqlite3.connect(db_path).execute("SELECT event_id, status FROM runs").fetchall()
    assert rows == [(fitting, "succeeded")]
    explained = _in_thread(run_cli, "logs", "explain", hostile)
    assert explained.exit_code == 0
    assert (f"no     aaa: data.name is {'a' * 40 + '!'!r}, expected to match regex '^(a+)+$'"
            in explained.stdout)


def test_a_parameter_rendered_to_nan_fails_the_run_with_the_reason(applied, run_cli):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo], timeout: "{{ (task.name ~ 'nan')[1:] | float }}"}}
    """)
    result = run_cli("tasks", "run", "t")
    assert result.exit_code == 1
    assert result.stderr.rstrip().endswith(
        "task 't': parameters invalid after rendering: with.timeout: expected a finite number, got "
        "nan: NaN and infinity (.nan, .inf, NaN, Infinity) are not allowed; write a number, or a "
        "duration such as 30s")
