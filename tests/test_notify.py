"""``notify:`` on a task: a notifier (register_notifiers; the built-in email one) tells a person
when a run ends in a listed state, with subject and text rendered from the run and its event."""

from __future__ import annotations

import json
import socket

import pytest

from taskengine_core.errors import RuleFileError


def email_settings(receiver) -> str:
    return json.dumps(receiver.settings)


def test_register_notifiers_is_used_by_notify_on_a_failed_run(taskengine, smtp_receiver):
    taskengine.apply(f"""
        settings:
          email: {email_settings(smtp_receiver)}
        tasks:
          backup:
            action: command.run
            with: {{argv: [sh, -c, "echo disk full >&2; exit 3"]}}
            notify: {{on: [failed], via: email, to: ops@example.org}}
        events:
          nightly: {{on: backup.start, tasks: [backup]}}
    """)
    [run] = taskengine.emit_and_run("backup.start")
    assert run["status"] == "failed"
    [mail] = smtp_receiver.wait_for(1)
    assert mail.subject == "[taskengine] task backup failed"
    assert mail.rcpt_tos == ["ops@example.org"]
    assert f"taskengine logs show {run['id']}" in mail.text and "exit" in mail.text
    assert "Triggered by event backup.start" in mail.text
    [decision] = [d for d in taskengine.run(run["id"])["decisions"] if d["decision"] == "notified"]
    assert decision["reason"] == "email to ops@example.org: run failed"


def test_templates_see_the_event_and_only_listed_outcomes_send(taskengine, smtp_receiver):
    taskengine.apply(f"""
        settings:
          email: {email_settings(smtp_receiver)}
        tasks:
          greet:
            action: command.run
            with: {{argv: [echo, "hi {{{{ event.data.user }}}}"]}}
            notify:
              - on: [succeeded]
                via: email
                to: "{{{{ event.data.user }}}}@example.org"
                subject: "greeted {{{{ event.data.user }}}} ({{{{ run.status }}}})"
                text: "output: {{{{ run.output.stdout | trim }}}}"
              - {{on: [failed], via: email, to: ops@example.org}}
        events:
          login: {{on: user.login, tasks: [greet]}}
    """)
    [run] = taskengine.emit_and_run("user.login", user="alice")
    assert run["status"] == "succeeded"
    [mail] = smtp_receiver.wait_for(1)
    assert (mail.subject, mail.rcpt_tos) == ("greeted alice (succeeded)", ["alice@example.org"])
    assert mail.text.strip() == "output: hi alice"


def test_an_unreachable_notifier_is_a_decision_and_leaves_the_run_alone(taskengine):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    taskengine.apply(f"""
        settings:
          email: {{host: 127.0.0.1, port: {port}, security: none, sender: te@example.org, timeout: 2}}
        tasks:
          t:
            action: command.run
            with: {{argv: ["false"]}}
            notify: {{via: email, to: ops@example.org}}
    """)
    import taskengine_core.notify as notify

    notify_backoff, notify.BACKOFF = notify.BACKOFF, 0.01
    try:
        run = taskengine.run_task("t")
        taskengine.run_until_idle()
    finally:
        notify.BACKOFF = notify_backoff
    assert run["status"] == "failed"
    decisions = taskengine.run(run["id"])["decisions"]
    [failed] = [d for d in decisions if d["decision"] == "notify failed"]
    assert failed["reason"].startswith("email: ") and str(port) in failed["reason"]
    assert taskengine.run(run["id"])["status"] == "failed"


@pytest.mark.parametrize("notify, path, message", [
    ("{via: pager, to: ops}", "tasks.t.notify.via", "unknown notifier 'pager'; installed notifiers: email"),
    ("[{via: email, to: ops, subject: '{{ run.task '}]", "tasks.t.notify[0].subject", "unexpected end of template"),
    ("{via: email}", "tasks.t.notify", "'to'"),
    ("{via: email, to: x, on: [exploded]}", "tasks.t.notify.on[0]", "exploded"),
])
def test_bad_notify_entries_fail_validation_with_their_path(taskengine, notify, path, message):
    with pytest.raises(RuleFileError) as caught:
        taskengine.apply(f"tasks:\n  t: {{action: command.run, with: {{argv: [x]}}, notify: {notify}}}\n")
    shown = [str(p) for p in caught.value.problems]
    assert any(f"  {path}  " in s and message in s for s in shown), shown
