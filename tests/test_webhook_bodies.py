"""What is sent: the default envelope, templated payloads, raw bodies, methods; and what
validate says about the action's parameters."""

from __future__ import annotations

import json
from datetime import datetime

from tests.test_webhook_delivery import send
from tests.test_webhook_support import webhook_rules
from tests.test_webhook_support import engine, queue_run, receiver  # noqa: F401 (fixtures)


def test_default_envelope_for_an_event(applied, engine, receiver):
    server = receiver()
    applied(webhook_rules(server.url) + """
events:
  on-sync: {on: "sync.*", tasks: [notify]}
""")
    e = engine()
    event_id = e.emit("sync.failed", {"sync": "nightly", "error": "disk full"})
    body = json.loads(server.wait_for(1)[0].body)
    assert set(body) == {"type", "timestamp", "event", "task", "run_id"}
    assert body["type"] == "sync.failed"
    assert body["event"] == {"type": "sync.failed", "id": event_id,
                             "data": {"sync": "nightly", "error": "disk full"}}
    assert body["task"] == "notify" and body["run_id"]
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))


def test_default_envelope_without_event(applied, engine, receiver):
    server = receiver()
    applied(webhook_rules(server.url))
    e = engine()
    run_id = queue_run(e, "notify")
    body = json.loads(server.wait_for(1)[0].body)
    assert body["type"] == "taskengine.task" and body["event"] is None and body["run_id"] == run_id


def test_payload_templated_from_event_data_full_path(applied, engine, receiver):
    server = receiver()
    applied(webhook_rules(server.url, task_with="""
      webhook: hook
      payload:
        text: 'Sync {{ event.data.sync }} failed: {{ event.data.error }}'
        details: '{{ event.data }}'
        count: '{{ event.data.count }}'
        quote: 'He said "hi" \\ {{ event.data.sync }}'
""") + """
events:
  on-sync: {on: "sync.*", tasks: [notify]}
""")
    e = engine()
    e.emit("sync.failed", {"sync": 'a"b', "error": "x\ny", "count": 3})
    req = server.wait_for(1)[0]
    body = json.loads(req.body)
    assert body == {"text": 'Sync a"b failed: x\ny', "details": {"sync": 'a"b', "error": "x\ny", "count": 3},
                    "count": 3, "quote": 'He said "hi" \\ a"b'}


def test_raw_body_with_content_type_and_extra_headers(applied, engine, receiver):
    server = receiver()
    applied(webhook_rules(server.url, task_with="""
      webhook: hook
      body: 'user={{ event.data.user }}'
      content_type: application/x-www-form-urlencoded
      headers: {X-Source: taskengine, Content-Length: '1'}
""") + """
events:
  logins: {on: user.login, tasks: [notify]}
""")
    e = engine()
    e.emit("user.login", {"user": "alice"})
    req = server.wait_for(1)[0]
    assert req.body == b"user=alice"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["X-Source"] == "taskengine"


def test_put_method(applied, engine, receiver):
    server = receiver()
    applied(webhook_rules(server.url, extra="    method: PUT"))
    send(engine())
    assert server.wait_for(1)[0].method == "PUT"


def test_payload_and_body_together_rejected_by_validate(write_rules, run_cli):
    path = write_rules(webhook_rules("http://127.0.0.1:9/x", task_with="{webhook: hook, payload: {a: 1}, body: x}"))
    result = run_cli("validate", path)
    assert result.exit_code == 1
    assert "either a payload" in result.output + result.stderr


def test_dangling_webhook_reference_rejected(write_rules, run_cli):
    path = write_rules(webhook_rules("http://127.0.0.1:9/x", task_with="{webhook: hoook}"))
    result = run_cli("validate", path)
    assert result.exit_code == 1 and "did you mean 'hook'" in result.output + result.stderr
