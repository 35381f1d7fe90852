"""The webhook plugin's pure parts: signatures, retry schedule, egress policy, bodies, schema."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError
from taskengine_webhook import action, retry, signing
from taskengine_webhook.egress import EgressPolicy, EgressRefused
from tests.test_webhook_support import new_secret, standardwebhooks


# --- signing --------------------------------------------------------------------------------


def test_signature_matches_the_reference_library():
    secret = new_secret()
    body = '{"a":"ü","b":[1,2]}'
    ts = 1_700_000_000
    ours = signing.sign(signing.signing_keys([secret]), "msg_1", ts, body.encode())
    theirs = standardwebhooks.Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, timezone.utc), body)
    assert ours == theirs


def test_secret_without_prefix_and_bad_secrets():
    assert signing.secret_key("whsec_AAEC") == signing.secret_key("AAEC") == b"\x00\x01\x02"
    with pytest.raises(signing.SigningError, match="not whsec_ followed by base64"):
        signing.secret_key("whsec_not base64!")
    with pytest.raises(signing.SigningError, match="at most 2"):
        signing.signing_keys([new_secret() for _ in range(3)])


def test_headers_without_secret_still_carry_id_and_timestamp():
    assert signing.signature_headers([], "msg_x", 12, b"{}") == {"webhook-id": "msg_x",
                                                                  "webhook-timestamp": "12"}


# --- retry schedule -------------------------------------------------------------------------


def test_backoff_schedule_grows_by_six_with_jitter_and_cap():
    rng = random.Random(1)
    for n, base in ((1, 5), (2, 30), (3, 180), (4, 1080), (5, 6480), (6, 36000), (9, 36000)):
        wait = retry.backoff(n, 5, 36000, rng)
        assert base * 0.8 <= wait <= base * 1.2, (n, wait)


@pytest.mark.parametrize("header, expected", [
    ("120", 120), ("0", 1), ("86400", 3600), (None, None), ("soon", None), ("", None),
])
def test_retry_after_seconds_clamped(header, expected):
    assert retry.parse_retry_after(header) == expected


def test_retry_after_http_date():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry.parse_retry_after(header, now) == 90
    assert retry.parse_retry_after(format_datetime(now - timedelta(days=1), usegmt=True), now) == 1


# --- egress ---------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.0.1", "fe80::1", "fe80::1%eth0",
                                     "::ffff:169.254.169.254", "fd00:ec2::254"])
def test_metadata_and_link_local_always_denied(address):
    assert "refused" in EgressPolicy().refused(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "93.184.216.34"])
def test_ordinary_addresses_allowed_by_default(address):
    assert EgressPolicy().refused(address) is None


def test_deny_and_allow_lists():
    policy = EgressPolicy(deny=["10.0.0.0/8"], allow=["10.1.0.0/16", "169.254.10.10/32"])
    assert "settings.webhook.deny" in policy.refused("10.2.0.1")
    assert policy.refused("10.1.0.1") is None
    assert policy.refused("169.254.10.10") is None  # an explicit allow wins
    with pytest.raises(EgressRefused):
        policy.check_host("10.9.9.9")
    policy.check_host("example.org")  # names are checked when resolved
    with pytest.raises(ValueError, match="not a network"):
        EgressPolicy(deny=["10.0.0.0/33"])


# --- bodies and the action ------------------------------------------------------------------


def ctx(event=None, db_path=None) -> ActionContext:
    from taskengine_core.deliveries import deliveries_for

    return ActionContext(run_id="r1", task="t1", event=event,
                         deliveries=deliveries_for(db_path) if db_path else None)


def test_body_forms():
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    event = {"id": "e1", "type": "user.login", "source": "cli", "time": "x", "data": {"u": "a"}}
    text, ctype, kind = action.build_body({"webhook": "w"}, ctx(event), now)
    assert ctype == "application/json" and kind == "user.login"
    assert text == ('{"type":"user.login","timestamp":"2026-03-01T00:00:00.000000Z",'
                    '"event":{"type":"user.login","id":"e1","data":{"u":"a"}},"task":"t1","run_id":"r1"}')
    assert action.build_body({"webhook": "w", "payload": "x\"y"}, ctx(), now)[0] == '"x\\"y"'
    assert action.build_body({"webhook": "w", "body": "a=1"}, ctx(), now)[:2] == (
        "a=1", "text/plain; charset=utf-8")
    with pytest.raises(ActionError, match="cannot be sent as JSON"):
        action.build_body({"webhook": "w", "payload": float("nan")}, ctx(), now)
    with pytest.raises(ActionError, match="larger than"):
        action.build_body({"webhook": "w", "body": "x" * (action.MAX_BODY + 1)}, ctx(), now)


def test_action_outside_the_engine_fails_clearly():
    with pytest.raises(ActionError, match="only inside the engine") as info:
        action.send({"webhook": "w"}, ctx())
    assert info.value.retryable is False


def test_action_unknown_webhook(db_path):
    from taskengine_core.store import Store

    Store(db_path).close()
    with pytest.raises(ActionError, match="no webhook named 'w'"):
        action.send({"webhook": "w"}, ctx(db_path=str(db_path)))


def test_registered_with_schema_and_settings():
    from taskengine_core.plugins import get_plugin_manager

    registry = get_plugin_manager().registry()
    item = registry.actions["webhook.send"]
    assert item.idempotent and item.schema["properties"]["webhook"]["x-taskengine-ref"] == "webhooks"
    assert "webhook" in registry.settings


def test_group_commit_from_many_threads_isolates_errors(applied, db_path):
    import threading

    from taskengine_webhook import intake
    from tests.test_webhook_support import query

    applied("webhooks:\n  hook: {url: 'http://127.0.0.1:9/x', retries: 2}\n")
    errors: list = []

    def send(i: int) -> None:
        name = "hook" if i % 5 else "missing"
        try:
            intake.commit(str(db_path), name, [{"id": f"msg_{i}", "webhook": name, "type": "t",
                                                "body": "{}", "content_type": "application/json"}])
        except ActionError as exc:
            errors.append((i, str(exc)))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = query(db_path, "SELECT id, max_attempts FROM webhook_deliveries")
    assert sorted(r["id"] for r in rows) == sorted(f"msg_{i}" for i in range(40) if i % 5)
    assert {r["max_attempts"] for r in rows} == {3}
    assert sorted(i for i, _ in errors) == [i for i in range(40) if i % 5 == 0]
    assert all("no webhook named 'missing'" in e for _, e in errors)
