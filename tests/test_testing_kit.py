"""The testing kit plugin authors get (taskengine_core.testing, a pytest plugin): its fixtures
are used here exactly as a plugin's own tests use them."""

from __future__ import annotations

import json
import urllib.request

import pytest

from taskengine_core.errors import RuleFileError
from taskengine_core.hookspecs import hookimpl


class Poster:
    """A plugin under test: posts its parameters as JSON to a URL."""

    __name__ = "poster"

    @hookimpl
    def register_actions(self, register):
        def post(params, ctx):
            request = urllib.request.Request(params["url"], data=json.dumps(params["body"]).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return {"status": response.status}

        register("poster.post", post, schema={"type": "object", "required": ["url", "body"]})


@pytest.fixture
def taskengine_plugins():
    return [Poster()]


def test_the_kit_is_a_pytest_plugin_of_the_distribution():
    import importlib.metadata

    found = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "taskengine"]
    assert found and found[0].value == "taskengine_core.testing.pytest_plugin"
    assert found[0].dist.name == "taskengine-core"


def test_emit_and_run_returns_the_runs_an_event_triggered(taskengine, http_receiver):
    taskengine.apply(f"""
        tasks:
          tell:
            action: poster.post
            with: {{url: "{http_receiver.url}/hook", body: {{user: "{{{{ event.data.user }}}}"}}}}
        events:
          login: {{on: user.login, when: {{data.user: alice}}, tasks: [tell]}}
    """)
    [run] = taskengine.emit_and_run("user.login", user="alice")
    assert (run["task"], run["status"], run["output"]) == ("tell", "succeeded", {"status": 200})
    [request] = http_receiver.requests
    assert (request.method, request.path, request.json()) == ("POST", "/hook", {"user": "alice"})
    assert taskengine.emit_and_run("user.login", user="bob") == []  # the condition holds it back
    assert [r["status"] for r in taskengine.runs("tell")] == ["succeeded"]


def test_http_receiver_answers_as_told_and_a_failure_is_a_failed_run(taskengine, http_receiver):
    taskengine.apply(f"""
        tasks:
          tell: {{action: poster.post, with: {{url: "{http_receiver.url}/", body: {{}}}}}}
    """)
    http_receiver.reply(503, "busy")
    run = taskengine.run_task("tell")
    assert run["status"] == "failed" and "503" in run["error"]
    assert taskengine.run_task("tell")["status"] == "succeeded"


def test_smtp_receiver_gets_what_email_send_sends(taskengine, smtp_receiver):
    settings = json.dumps(smtp_receiver.settings)
    taskengine.apply(f"""
        settings:
          email: {settings}
        tasks:
          mail:
            action: email.send
            with: {{to: ops@example.org, subject: "disk {{{{ event.data.disk }}}}", text: full}}
        events:
          disk: {{on: disk.full, tasks: [mail]}}
    """)
    [run] = taskengine.emit_and_run("disk.full", {"disk": "/var"})
    assert run["status"] == "succeeded", run["error"]
    [mail] = smtp_receiver.wait_for(1)
    assert (mail.subject, mail.text.strip(), mail.rcpt_tos) == ("disk /var", "full", ["ops@example.org"])


def test_apply_reports_rule_file_errors(taskengine):
    with pytest.raises(RuleFileError) as caught:
        taskengine.apply("tasks: {t: {action: poster.nope}}")
    assert "unknown action 'poster.nope'" in str(caught.value.problems[0])


def test_a_plugin_listed_and_installed_is_loaded_once():
    from taskengine_core.plugins import get_plugin_manager
    import taskengine_command

    manager = get_plugin_manager(extra_plugins=[taskengine_command])
    assert manager.registry().actions["command.run"].plugin.distribution == "taskengine-core"
