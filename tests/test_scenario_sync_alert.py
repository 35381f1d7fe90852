"""Scenario: a sync job logs an error → sync.failed → a signed webhook to the alerting system.
Reads the shipped examples/alert-on-sync-error.yaml and changes only where things are (the
log's path, the receiver's URL); the receiver on 127.0.0.1 checks the Standard Webhooks
signature with the official library."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import yaml

from tests.test_engine import decisions
from tests.test_logwatch_engine import append, logwatch_events, wait_for, wait_started
from tests.examples_support import load_shipped, shipped_settings
from tests.test_webhook_support import engine, receiver, standardwebhooks  # noqa: F401 - fixtures

EXAMPLE = Path(__file__).parent.parent / "examples" / "alert-on-sync-error.yaml"


def test_a_sync_error_line_sends_one_signed_alert(tmp_path, db_path, run_cli, receiver, engine, monkeypatch):  # noqa: F811
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    monkeypatch.setenv("OPS_ALERTS_SIGNING_SECRET", secret)
    monkeypatch.setenv("OPS_ALERTS_TOKEN", "alerts-token-1")
    hook = receiver()
    log = tmp_path / "sync.log"
    log.write_text("2026-12-04T01:00:00Z ERROR sync before-start failed: not read\n")
    rules = load_shipped(EXAMPLE)
    rules["settings"] = shipped_settings("logwatch")
    rules["settings"]["logwatch"]["files"] = [f for f in rules["settings"]["logwatch"]["files"] if f.get("rules")]
    rules["settings"]["logwatch"]["files"][0]["path"] = str(log)
    rules["settings"]["logwatch"]["poll"] = 0.05
    rules["webhooks"]["ops-alerts"]["url"] = hook.url
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    assert run_cli("apply", tmp_path / "rules.yaml").exit_code == 0

    engine()
    wait_started(db_path, f"file:{log}")
    append(log, "2026-12-04T02:00:12Z INFO sync nightly-offsite started\n"
                "2026-12-04T02:00:13Z ERROR sync nightly-offsite failed: connection reset by peer\n"
                "2026-12-04T02:00:14Z ERROR sync nightly-offsite failed: retry failed too\n")  # throttled
    (request,) = hook.wait_for(1)
    payload = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    assert payload == {"text": "Sync nightly-offsite failed: connection reset by peer",
                       "sync": "nightly-offsite", "error": "connection reset by peer",
                       "logged_at": "2026-12-04T02:00:13Z", "log": str(log)}
    assert request.headers["Authorization"] == "Bearer alerts-token-1"
    events = wait_for(lambda: len(logwatch_events(db_path, "sync.failed")) == 2 and logwatch_events(db_path))
    assert [e["data"]["error"] for e in events] == ["connection reset by peer", "retry failed too"]
    assert json.dumps(events).count("before-start") == 0  # written before the first start
    wait_for(lambda: decisions(db_path, decision="throttled"))  # the second failure of the same
    assert len(hook.requests) == 1                                # sync within 15 minutes
