"""The dashboard over real HTTP: every route, every role, every refusal, and that a refused
request changes nothing."""

from __future__ import annotations

import hashlib
import html
import re
import time

import pytest
import requests

from tests.dashboard_support import NAMES, SECRET, TOKENS, dashboard  # noqa: F401 - fixture
from tests.html_check import check_page

PAGES = ["/ui", "/ui/runs", "/ui/tasks", "/ui/tasks/greet", "/ui/schedules", "/ui/events",
         "/ui/webhooks", "/ui/audit", "/ui/plugins", "/ui/graph"]


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def finished_run(dashboard, task: str) -> str:
    return wait_for(lambda: (dashboard.rows("SELECT id FROM runs WHERE task = ? AND status NOT IN "
                                            "('pending', 'running') ORDER BY created_at DESC", (task,))
                             or [None])[0])[0]


@pytest.mark.parametrize("path", PAGES + ["/ui/runs/nope", "/ui/events/nope"])
def test_every_page_sends_a_stranger_to_sign_in(dashboard, path):
    response = requests.get(dashboard.base + path, allow_redirects=False)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/ui/login?next=")


def test_a_post_without_a_session_is_refused_and_changes_nothing(dashboard):
    before = dashboard.state()
    response = requests.post(dashboard.base + "/ui/tasks/greet/disable", headers={"Origin": dashboard.base})
    assert response.status_code == 401
    assert "not signed in" in response.text
    assert dashboard.state() == before


def test_sign_in_sets_a_strict_http_only_cookie_that_expires(dashboard):
    response = requests.post(dashboard.base + "/ui/login", data={"token": TOKENS["viewer"], "next": "/ui/runs"},
                             headers={"Origin": dashboard.base}, allow_redirects=False)
    assert response.status_code == 303 and response.headers["Location"] == "/ui/runs"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert re.search(r"Max-Age=\d+", cookie)
    assert TOKENS["viewer"] not in cookie


@pytest.mark.parametrize("token, status, message", [
    ("wrong", 401, "that token is not valid"),
    (TOKENS["emit"], 403, "may only emit events; it cannot sign in"),
])
def test_a_bad_token_does_not_sign_in(dashboard, token, status, message):
    response = requests.post(dashboard.base + "/ui/login", data={"token": token},
                             headers={"Origin": dashboard.base}, allow_redirects=False)
    assert response.status_code == status
    assert message in response.text
    assert "Set-Cookie" not in response.headers


def test_sign_in_from_another_origin_is_refused(dashboard):
    response = requests.post(dashboard.base + "/ui/login", data={"token": TOKENS["admin"]},
                             headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert response.status_code == 403
    assert "is not this server" in response.text
    assert "Set-Cookie" not in response.headers


def test_next_never_leads_off_the_dashboard(dashboard):
    for target in ("//evil.example/x", "http://evil.example", "/elsewhere", "/ui\\@evil"):
        response = requests.post(dashboard.base + "/ui/login", data={"token": TOKENS["viewer"], "next": target},
                                 headers={"Origin": dashboard.base}, allow_redirects=False)
        assert response.headers["Location"] == "/ui"


@pytest.mark.parametrize("path", PAGES)
def test_a_viewer_sees_every_page_and_each_is_well_formed(dashboard, path):
    dashboard.engine.emit("demo.hello", {"name": "viewer"})
    session = dashboard.sign_in("viewer")
    response = session.get(dashboard.base + path)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["X-Frame-Options"] == "DENY"
    check_page(response.text)


def test_the_run_trace_shows_event_decisions_attempts_and_output(dashboard):
    event_id = dashboard.engine.emit("demo.hello", {"name": "trace"})
    run_id = finished_run(dashboard, "greet")
    page = dashboard.sign_in("viewer").get(f"{dashboard.base}/ui/runs/{run_id}").text
    check_page(page)
    assert event_id in page and "demo.hello" in page
    assert "matched" in page  # the rule decision for the event
    assert "succeeded" in page and "hello trace" in page  # the attempt and its output


def test_a_failed_run_shows_its_error(dashboard):
    dashboard.engine.emit("demo.fail", {})
    run_id = finished_run(dashboard, "fail")
    page = dashboard.sign_in("viewer").get(f"{dashboard.base}/ui/runs/{run_id}").text
    assert "failed" in page and "broken" in page


def test_secrets_never_reach_a_page(dashboard):
    run_id = dashboard.engine.queue_run("leak")
    finished_run(dashboard, "leak")
    session = dashboard.sign_in("admin")
    pages = PAGES + [f"/ui/runs/{run_id}", "/ui/tasks/leak"]
    for path in pages:
        text = session.get(dashboard.base + path).text
        assert SECRET not in text, path
        for token in TOKENS.values():
            assert token not in text, path


def test_unknown_run_event_and_task_are_404(dashboard):
    session = dashboard.sign_in("viewer")
    assert session.get(dashboard.base + "/ui/runs/nope").status_code == 404
    assert session.get(dashboard.base + "/ui/tasks/nope").status_code == 404
    response = session.get(dashboard.base + "/ui/events/nope")
    assert response.status_code == 404 and "no event with id" in response.text


def test_explain_gives_the_same_answer_as_the_cli(dashboard, run_cli):
    event_id = dashboard.engine.emit("demo.hello", {"name": "why"})
    finished_run(dashboard, "greet")
    page = dashboard.sign_in("viewer").get(f"{dashboard.base}/ui/events/{event_id}").text
    cli = run_cli("--db", dashboard.db_path, "logs", "explain", event_id).stdout
    for rule in ("hello", "broken"):
        assert rule in page and rule in cli
    assert "type is demo.fail" in cli.replace("'", "") or "demo.fail" in cli
    assert "demo.fail" in page


@pytest.mark.parametrize("path", ["/ui/tasks/greet/disable", "/ui/tasks/greet/enable", "/ui/tasks/greet/run",
                                  "/ui/runs/x/rerun", "/ui/webhooks/receiver/test",
                                  "/ui/webhooks/deliveries/x/redeliver"])
def test_a_viewer_cannot_change_anything(dashboard, path):
    session = dashboard.sign_in("viewer")
    dashboard.csrf(session)
    before = dashboard.state()
    response = dashboard.post(session, path)
    assert response.status_code == 403
    assert f"the token '{NAMES['viewer']}' is a viewer; this needs operator" in html.unescape(response.text)
    assert dashboard.state() == before


@pytest.mark.parametrize("csrf, origin, reason", [
    (False, "self", "no valid CSRF token"),
    (True, "http://evil.example", "is not this server"),
    (True, None, "has no Origin header"),
])
def test_a_change_without_csrf_or_origin_is_refused_and_changes_nothing(dashboard, csrf, origin, reason):
    session = dashboard.sign_in("admin")
    dashboard.csrf(session)
    before = dashboard.state()
    response = dashboard.post(session, "/ui/tasks/greet/disable", csrf=csrf, origin=origin)
    assert response.status_code == 403
    assert reason in response.text and "Nothing was changed" in response.text
    assert dashboard.state() == before


def test_a_wrong_csrf_header_is_refused(dashboard):
    session = dashboard.sign_in("operator")
    response = session.post(dashboard.base + "/ui/tasks/greet/disable",
                            headers={"Origin": dashboard.base, "X-CSRF-Token": "guess", "HX-Request": "true"})
    assert response.status_code == 403
    assert dashboard.rows("SELECT enabled FROM tasks WHERE name = 'greet'") == [(1,)]


def test_an_operator_disables_and_enables_a_task_audited_under_the_token_name(dashboard):
    session = dashboard.sign_in("operator")
    response = session.post(dashboard.base + "/ui/tasks/greet/disable",
                            headers={"Origin": dashboard.base, "X-CSRF-Token": dashboard.csrf(session),
                                     "HX-Request": "true"})
    assert response.status_code == 200 and "Enable" in response.text  # the row, swapped in place
    assert dashboard.rows("SELECT enabled FROM tasks WHERE name = 'greet'") == [(0,)]
    assert dashboard.post(session, "/ui/tasks/greet/enable").status_code == 303
    assert dashboard.rows("SELECT enabled FROM tasks WHERE name = 'greet'") == [(1,)]
    audit = dashboard.rows("SELECT actor, action, kind, name, source FROM audit WHERE kind = 'task' "
                           "AND name = 'greet' AND source = 'ui' ORDER BY id")
    assert audit == [("ui:ops", "disabled", "task", "greet", "ui"), ("ui:ops", "enabled", "task", "greet", "ui")]


def test_run_now_with_parameters_is_queued_and_audited(dashboard):
    session = dashboard.sign_in("operator")
    response = dashboard.post(session, "/ui/tasks/greet/run", {"params": '{"argv": ["echo", "from the ui"]}'})
    assert response.status_code == 303
    run_id = response.headers["Location"].rsplit("/", 1)[1]
    wait_for(lambda: dashboard.rows("SELECT status FROM runs WHERE id = ?", (run_id,))[0][0] == "succeeded")
    assert dashboard.rows("SELECT trigger, params FROM runs WHERE id = ?", (run_id,)) == [
        ("manual", '{"argv": ["echo", "from the ui"]}')]
    assert dashboard.rows("SELECT actor, action FROM audit WHERE name = 'greet' AND source = 'ui'") == [("ui:ops", "run")]
    assert "run by hand by ui:ops" in dashboard.rows("SELECT reason FROM decisions WHERE run_id = ?", (run_id,))[0][0]


@pytest.mark.parametrize("params, message", [
    ("{not json", "parameters are not valid JSON"),
    ("[1, 2]", "parameters must be a JSON object"),
])
def test_run_now_with_bad_parameters_runs_nothing(dashboard, params, message):
    session = dashboard.sign_in("operator")
    dashboard.csrf(session)
    before = dashboard.state()
    response = dashboard.post(session, "/ui/tasks/greet/run", {"params": params})
    assert response.status_code == 400 and message in response.text
    assert dashboard.state() == before


def test_rerun_queues_the_same_task_again(dashboard):
    dashboard.engine.emit("demo.hello", {"name": "again"})
    first = finished_run(dashboard, "greet")
    session = dashboard.sign_in("operator")
    response = dashboard.post(session, f"/ui/runs/{first}/rerun")
    assert response.status_code == 303
    second = response.headers["Location"].rsplit("/", 1)[1]
    assert second != first
    assert dashboard.rows("SELECT task, trigger FROM runs WHERE id = ?", (second,)) == [("greet", "manual")]
    assert ("ui:ops", "run") in dashboard.rows("SELECT actor, action FROM audit WHERE source = 'ui'")


def test_redeliver_and_send_a_test_queue_deliveries_for_the_dispatcher(dashboard):
    session = dashboard.sign_in("operator")
    response = dashboard.post(session, "/ui/webhooks/receiver/test")
    assert response.status_code == 303
    delivery = response.headers["Location"].rsplit("/", 1)[1]
    wait_for(lambda: dashboard.rows("SELECT status FROM webhook_deliveries WHERE id = ?", (delivery,))[0][0]
             in ("failed", "exhausted"))  # nothing listens on port 9
    assert dashboard.post(session, f"/ui/webhooks/deliveries/{delivery}/redeliver").status_code == 303
    wait_for(lambda: dashboard.rows("SELECT count(*) FROM webhook_attempts WHERE delivery_id = ?",
                                    (delivery,))[0][0] == 2)
    assert dashboard.rows("SELECT actor, action, kind FROM audit WHERE source = 'ui' ORDER BY id") == [
        ("ui:ops", "test", "webhook"), ("ui:ops", "redeliver", "webhook_delivery")]
    page = session.get(f"{dashboard.base}/ui/webhooks/deliveries/{delivery}").text
    check_page(page)
    assert "127.0.0.1" in page


def test_redeliver_of_an_unknown_delivery_says_so(dashboard):
    session = dashboard.sign_in("operator")
    response = dashboard.post(session, "/ui/webhooks/deliveries/nope/redeliver")
    assert response.status_code == 404 and "no webhook delivery 'nope'" in html.unescape(response.text)


def test_runs_page_by_keyset_and_filters(dashboard):
    for n in range(120):
        dashboard.engine.queue_run("greet", {"argv": ["true", str(n)]})
    session = dashboard.sign_in("viewer")
    seen, url = [], dashboard.base + "/ui/runs?task=greet"
    for _ in range(4):
        page = session.get(url).text
        seen += re.findall(r'<tr id="run-([0-9a-f]+)"', page)
        following = re.search(r'<a rel="next" href="([^"]+)"', page)
        if not following:
            break
        url = dashboard.base + following.group(1).replace("&amp;", "&")
    assert len(seen) == 120 and len(set(seen)) == 120
    none = session.get(dashboard.base + "/ui/runs?task=greet&status=cancelled").text
    assert "No runs match." in none
    bad = session.get(dashboard.base + "/ui/runs?since=yesterday")
    assert bad.status_code == 400 and "cannot read the time" in bad.text


def test_the_runs_rows_fragment_shows_a_new_run_for_live_refresh(dashboard):
    session = dashboard.sign_in("viewer")
    before = session.get(dashboard.base + "/ui/runs/rows").text
    run_id = dashboard.engine.queue_run("greet")
    after = session.get(dashboard.base + "/ui/runs/rows").text
    assert run_id not in before and f'id="run-{run_id}"' in after
    assert "<html" not in after  # a fragment for htmx, not a page


def test_sign_out_ends_the_session(dashboard):
    session = dashboard.sign_in("viewer")
    assert dashboard.post(session, "/ui/logout").status_code == 303
    assert session.get(dashboard.base + "/ui", allow_redirects=False).status_code == 303


def test_an_emit_token_posts_events_a_viewer_token_does_not(dashboard):
    ok = requests.post(dashboard.base + "/events", json={"type": "demo.hello", "data": {"name": "hook"}},
                       headers={"Authorization": f"Bearer {TOKENS['emit']}"})
    assert ok.status_code == 202


def test_metrics_in_prometheus_format(dashboard):
    dashboard.engine.emit("demo.hello", {"name": "m"})
    finished_run(dashboard, "greet")
    requests.post(dashboard.base + "/events", data="nope", headers={"Content-Type": "text/plain"})
    text = requests.get(dashboard.base + "/metrics").text
    assert 'taskengine_runs_total{status="succeeded",task="greet"} 1.0' in text
    assert 'taskengine_run_duration_seconds_count{task="greet"} 1.0' in text
    assert 'taskengine_queue_depth{queue="inbox"}' in text
    assert 'taskengine_ingress_events_total{outcome="rejected",reason="not_json"} 1.0' in text
    assert "taskengine_schedule_lateness_seconds_bucket" in text
    assert "taskengine_webhook_attempts" in text


def test_metrics_need_a_token_off_loopback(db_path, applied, monkeypatch):
    from taskengine_core.engine import Engine

    monkeypatch.setenv("TASKENGINE_INGRESS_TOKEN", "ingress-token-123")
    applied("tasks: {t: {action: command.run, with: {argv: ['true']}}}\n")
    engine = Engine(db_path)
    engine.start(listen="0.0.0.0:0", ui=True)
    try:
        url = f"http://127.0.0.1:{engine.ingress.port}/metrics"
        refused = requests.get(url)
        assert refused.status_code == 401 and "metrics need a bearer token" in refused.text
        assert requests.get(url, headers={"Authorization": "Bearer ingress-token-123"}).status_code == 200
    finally:
        engine.stop(grace=1)


def test_no_ui_serves_no_dashboard(db_path, applied):
    from taskengine_core.engine import Engine

    applied("tasks: {t: {action: command.run, with: {argv: ['true']}}}\n")
    engine = Engine(db_path)
    engine.start(listen="127.0.0.1:0", ui=False)
    try:
        assert requests.get(f"http://{engine.ingress.address}/ui", allow_redirects=False).status_code == 404
        assert requests.get(f"http://{engine.ingress.address}/healthz").status_code == 200
    finally:
        engine.stop(grace=1)


def test_vendored_htmx_is_the_pinned_2x_file(dashboard):
    body = requests.get(dashboard.base + "/ui/static/htmx.min.js").content
    assert hashlib.sha256(body).hexdigest() == "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
    assert b'version:"2.0.11"' in body or b"2.0.11" in body


def test_the_run_trace_says_why_the_other_rules_did_not_fire(dashboard):
    dashboard.engine.emit("demo.hello", {"name": "others"})
    run_id = finished_run(dashboard, "greet")
    page = html.unescape(dashboard.sign_in("viewer").get(f"{dashboard.base}/ui/runs/{run_id}").text)
    assert "broken" in page and "demo.fail" in page  # the rule that did not match, and why


def test_taskengine_run_prints_the_dashboard_and_a_token_to_sign_in_with(tmp_path):
    """What a new user does: run the engine, open the printed address, sign in with the printed
    token, see the runs."""
    import os
    import subprocess
    import sys

    rules = tmp_path / "rules.yaml"
    rules.write_text("tasks:\n  say: {action: command.run, with: {argv: [echo, hi]}}\n"
                     "events:\n  hi: {on: demo.hello, tasks: [say]}\n")
    env = {**os.environ, "TASKENGINE_HOME": str(tmp_path), "TASKENGINE_DB": str(tmp_path / "te.db")}
    engine = subprocess.Popen([sys.executable, "-m", "taskengine_core", "run", "--rules", str(rules),
                               "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = token = None
        for line in engine.stderr:
            if line.startswith("dashboard: "):
                url = line.split()[1]
            if line.startswith("sign in with the token "):
                token = line.split()[5]
                break
        assert url and url.endswith("/ui") and token
        base = url[: -len("/ui")]
        posted = requests.post(base + "/events", json={"type": "demo.hello"})
        assert posted.status_code == 202
        session = requests.Session()
        session.post(url + "/login", data={"token": token}, headers={"Origin": base})
        # the run's row, succeeded ("succeeded" alone is also in the status filter's choices)
        row = lambda text: '<a href="/ui/tasks/say">say</a>' in text and ">succeeded</span>" in text  # noqa: E731
        assert wait_for(lambda: row(session.get(url + "/runs").text))
    finally:
        engine.terminate()
        engine.wait(30)


def test_an_admin_pauses_and_resumes_every_run_audited(dashboard):
    session = dashboard.sign_in("admin")
    assert dashboard.post(session, "/ui/pause", {"reason": "maintenance", "for": "2h"}).status_code == 303
    page = session.get(dashboard.base + "/ui").text
    check_page(page)
    assert "paused" in page and "maintenance" in page and "ui:boss" in page
    run_id = dashboard.engine.queue_run("greet")
    time.sleep(0.5)  # the engine steps several times meanwhile: the run waits
    assert dashboard.rows("SELECT status FROM runs WHERE id = ?", (run_id,)) == [("pending",)]
    assert requests.get(dashboard.base + "/healthz").json()["paused"]["reason"] == "maintenance"
    assert dashboard.post(session, "/ui/resume").status_code == 303
    wait_for(lambda: dashboard.rows("SELECT status FROM runs WHERE id = ?", (run_id,)) == [("succeeded",)])
    assert dashboard.rows("SELECT actor, action FROM audit WHERE kind = 'engine' ORDER BY id") == [
        ("ui:boss", "paused"), ("ui:boss", "resumed")]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_an_admin_may_pause(dashboard, role):
    session = dashboard.sign_in(role)
    dashboard.csrf(session)
    before = dashboard.state()
    response = dashboard.post(session, "/ui/pause", {"reason": "x"})
    assert response.status_code == 403 and "this needs admin" in html.unescape(response.text)
    assert dashboard.state() == before


def test_a_bad_pause_duration_pauses_nothing(dashboard):
    session = dashboard.sign_in("admin")
    dashboard.csrf(session)
    before = dashboard.state()
    response = dashboard.post(session, "/ui/pause", {"for": "soon"})
    assert response.status_code == 400 and "cannot read the duration" in html.unescape(response.text)
    assert dashboard.state() == before
    assert dashboard.post(session, "/ui/resume").status_code == 409  # not paused: says so
