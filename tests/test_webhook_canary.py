"""Canary: random secret values referenced by the rule file go through every failure path; none
may appear in the database (with its WAL), the CLI output or the logs."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path

from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    FAST, deliveries, engine, free_port, new_secret, queue_run, receiver, Reply, wait_until)


def _files(db_path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(str(db_path) + suffix)
        if path.exists():
            out += path.read_bytes()
    return out


def test_secrets_never_stored_shown_or_logged(applied, engine, receiver, run_cli, db_path,
                                              monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    token, password, apikey = (secrets.token_urlsafe(18) for _ in range(3))
    header_value, url_key = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    signing = new_secret()
    env = {"CANARY_TOKEN": token, "CANARY_PASS": password, "CANARY_KEY": apikey,
           "CANARY_HDR": header_value, "CANARY_URLKEY": url_key, "CANARY_SIGNING": signing}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    basic = base64.b64encode(f"ops:{password}".encode()).decode()
    raw_values = [token, password, apikey, header_value, url_key, signing,
                  signing.removeprefix("whsec_"), basic]

    unauthorized = receiver([Reply(401, b"denied", echo_headers=True)])
    failing = receiver([Reply(500, b"broken", echo_headers=True)])
    moved = receiver([Reply(302, b"moved", headers={"Location": "http://127.0.0.1:9/elsewhere"},
                            echo_headers=True)])
    closed = free_port()
    applied(f"""
{FAST}
webhooks:
  bearer:
    url: {unauthorized.url}
    auth: {{type: bearer, token: "${{env:CANARY_TOKEN}}"}}
    secret: "${{env:CANARY_SIGNING}}"
    headers: {{X-Custom: "${{env:CANARY_HDR}}"}}
    retries: 1
  basic:
    url: {failing.url}
    auth: {{type: basic, username: ops, password: "${{env:CANARY_PASS}}"}}
    retries: 1
  apikey:
    url: "{moved.url}?key=${{env:CANARY_URLKEY}}"
    auth: {{type: apikey, header: X-Api-Key, key: "${{env:CANARY_KEY}}"}}
    retries: 1
  down:
    url: "http://127.0.0.1:{closed}/hook?key=${{env:CANARY_URLKEY}}"
    auth: {{type: bearer, token: "${{env:CANARY_TOKEN}}"}}
    retries: 1
tasks:
  t-bearer: {{action: webhook.send, with: {{webhook: bearer}}}}
  t-basic: {{action: webhook.send, with: {{webhook: basic}}}}
  t-apikey: {{action: webhook.send, with: {{webhook: apikey}}}}
  t-down: {{action: webhook.send, with: {{webhook: down}}}}
""")
    e = engine()
    ids = [f"msg_{queue_run(e, task)}" for task in ("t-bearer", "t-basic", "t-apikey", "t-down")]
    wait_until(lambda: all(d["status"] == "exhausted" for d in deliveries(db_path)) and
               len(deliveries(db_path)) == 4, 15, "every delivery exhausted")
    # the servers really got the secrets (so the canary is meaningful) and echoed them back
    assert token in unauthorized.requests[0].headers["Authorization"]
    assert unauthorized.requests[0].headers["X-Custom"] == header_value
    assert failing.requests[0].headers["Authorization"] == f"Basic {basic}"
    assert moved.requests[0].headers["X-Api-Key"] == apikey and url_key in moved.requests[0].path
    stored_while_running = _files(db_path)

    outputs = []
    for args in (["webhooks", "deliveries", "--json"], ["webhooks", "deliveries"],
                 ["webhooks", "list", "--json"], ["webhooks", "list"], ["logs", "list", "--json"],
                 ["audit", "list", "--json"], ["webhooks", "test", "bearer"],
                 ["webhooks", "test", "apikey", "--json"], ["webhooks", "test", "down"],
                 *(["webhooks", "delivery", i, "--json"] for i in ids),
                 *(["webhooks", "delivery", i] for i in ids),
                 ["webhooks", "redeliver", ids[1]], ["webhooks", "redeliver", ids[0], "--json"]):
        result = run_cli(*args)
        outputs.append(result.stdout + result.stderr)
    e.stop(grace=5)

    excerpts = " ".join(json.dumps(json.loads(run_cli("webhooks", "delivery", i, "--json").stdout))
                        for i in ids)
    assert "you sent" in excerpts and "********" in excerpts  # the echoes were stored, scrubbed
    haystacks = {"database while running": stored_while_running.decode("latin-1"),
                 "database": _files(db_path).decode("latin-1"),
                 "CLI output": "\n".join(outputs), "logs": caplog.text}
    for where, text in haystacks.items():
        for value in raw_values:
            assert value not in text, f"a secret value leaked into the {where}"
