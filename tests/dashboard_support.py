"""A running engine with the dashboard on 127.0.0.1, named tokens for every role, and helpers
to sign in over real HTTP. Shared by the HTTP-level and the browser tests."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from taskengine_core.engine import Engine

TOKENS = {"viewer": "view-token-7f3a91c2", "operator": "op-token-5b8e02d4",
          "admin": "admin-token-c41d77e9", "emit": "emit-token-0e9f6a31"}
NAMES = {"viewer": "watch", "operator": "ops", "admin": "boss", "emit": "hooks"}
SECRET = "s3cr3t-canary-91f0aa"

RULES = """
settings:
  access:
    tokens:
      watch: {token: "${env:UI_VIEW}", role: viewer}
      ops:   {token: "${env:UI_OP}", role: operator}
      boss:  {token: "${env:UI_ADMIN}", role: admin}
      hooks: {token: "${env:UI_EMIT}", role: emit}
webhooks:
  receiver:
    url: "http://127.0.0.1:9/hook"
    retries: 0
tasks:
  greet:
    description: Greets whoever the event names
    action: command.run
    with: {argv: [echo, "hello {{ event.data.name | default('world') }}"]}
  leak:
    action: command.run
    with: {argv: [echo, "the secret is ${env:UI_CANARY}"]}
  fail:
    action: command.run
    with: {argv: [sh, -c, "echo broken >&2; exit 3"]}
  notify:
    action: webhook.send
    with: {webhook: receiver, payload: {text: "hi"}}
schedules:
  nightly: {cron: "0 2 * * *", timezone: Europe/Berlin}
events:
  hello: {on: demo.hello, tasks: [greet]}
  broken: {on: demo.fail, tasks: [fail]}
"""


@dataclass
class Dashboard:
    engine: Engine
    base: str
    db_path: Path

    def sign_in(self, role: str) -> requests.Session:
        session = requests.Session()
        response = session.post(f"{self.base}/ui/login", data={"token": TOKENS[role], "next": "/ui"},
                                headers={"Origin": self.base}, allow_redirects=False)
        assert response.status_code == 303, response.text
        return session

    def csrf(self, session: requests.Session) -> str:
        page = session.get(f"{self.base}/ui").text
        return re.search(r'X-CSRF-Token": "([^"]+)"', page).group(1)

    def post(self, session: requests.Session, path: str, data: dict | None = None, *, csrf: bool = True,
             origin: str | None = "self", **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if origin is not None:
            headers["Origin"] = self.base if origin == "self" else origin
        data = dict(data or {})
        if csrf:
            data["csrf"] = self.csrf(session)
        return session.post(f"{self.base}{path}", data=data, headers=headers, allow_redirects=False, **kwargs)

    def state(self) -> list[str]:
        """Every row a request could change (the scheduler's own bookkeeping left out)."""
        from tests.conftest import dump_db

        return [line for line in dump_db(self.db_path) if not line.startswith("schedule_state:")]

    def rows(self, sql: str, params=()) -> list[tuple]:
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


@pytest.fixture
def dashboard(db_path, applied, monkeypatch) -> Dashboard:
    for role, env in (("viewer", "UI_VIEW"), ("operator", "UI_OP"), ("admin", "UI_ADMIN"), ("emit", "UI_EMIT")):
        monkeypatch.setenv(env, TOKENS[role])
    monkeypatch.setenv("UI_CANARY", SECRET)
    applied(RULES)
    engine = Engine(db_path)
    engine.start(listen="127.0.0.1:0", ui=True)
    yield Dashboard(engine, f"http://{engine.ingress.address}", db_path)
    engine.stop(grace=2)
