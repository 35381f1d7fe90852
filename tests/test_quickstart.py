"""The README's first command on the shipped quickstart (rules/): it starts, shows a run, an
explained event and a webhook delivery, and changes nothing outside the engine's own data."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.test_updates_support import system_apt_snapshot

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
README = ROOT / "README.md"


def tree(path: Path) -> dict[str, tuple]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_readme_first_command_runs_the_quickstart():
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)\n```", text, re.S).group(1)
    assert first.endswith("taskengine run --rules rules/ --listen 127.0.0.1:8080")


def test_quickstart_uses_nothing_but_harmless_actions():
    """No package manager, no VMs, no accounts, no mail relay: only printing commands and a
    webhook to the engine's own ingress."""
    for path in RULES.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text()) or {}
        assert not {"email", "updates", "vm"} & set(doc.get("settings") or {}), path.name
        for name, task in (doc.get("tasks") or {}).items():
            assert task["action"] in ("command.run", "webhook.send"), f"{path.name}: {name}"
            if task["action"] == "command.run":
                assert task["with"]["argv"][0] in ("echo", "df"), f"{path.name}: {name}"
        for name, hook in (doc.get("webhooks") or {}).items():
            assert hook["url"] == "http://127.0.0.1:8080/events", f"{path.name}: {name}"


def test_the_quickstart_shows_a_run_an_explanation_and_a_delivery(tmp_path):
    # The shipped files, with the listen port swapped for a free one (8080 may be taken here).
    port = free_port()
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    for path in rules.glob("*.yaml"):
        path.write_text(path.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    home, cwd, user_home = tmp_path / "home", tmp_path / "cwd", tmp_path / "user"
    for d in (cwd, user_home):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKENGINE_")}
    env.update(TASKENGINE_HOME=str(home), HOME=str(user_home))
    repo_before, apt_before = tree(ROOT / "rules"), system_apt_snapshot()
    cli = [sys.executable, "-m", "taskengine_core"]

    def te(*args) -> str:
        done = subprocess.run([*cli, *args], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    engine = subprocess.Popen([*cli, "run", "--rules", str(rules), "--listen", f"127.0.0.1:{port}"],
                              env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_healthy(port, engine)
        hello = te("emit", "demo.hello", "name=operator").strip()
        runs = poll(lambda: [r for r in json.loads(te("logs", "list", "--json"))
                             if r["status"] == "succeeded"], count=2)
        assert {r["task"] for r in runs} == {"say-hello", "echo-hello"}
        say = next(r for r in runs if r["task"] == "say-hello")
        assert f"hello operator (event {hello})" in te("logs", "show", say["id"])
        [delivery] = poll(lambda: [d for d in json.loads(te("webhooks", "deliveries", "--json"))
                                   if d["status"] == "delivered"], count=1)
        assert delivery["webhook"] == "local-inbox" and delivery["last_status_code"] == 202
        bob = te("emit", "demo.hello", "name=bob").strip()
        poll(lambda: [r for r in json.loads(te("logs", "list", "--json"))
                      if r["status"] == "succeeded"], count=4)
        explained = te("logs", "explain", bob)
        assert "alice-hello: data.name is 'bob', expected 'alice'" in explained
        assert "MATCH  hello" in explained
    finally:
        engine.send_signal(signal.SIGTERM)
        out, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err
    # nothing outside the engine's own data changed
    assert list(cwd.iterdir()) == [] and list(user_home.iterdir()) == []
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith("taskengine.db")) == ["cache"]
    assert tree(ROOT / "rules") == repo_before
    assert system_apt_snapshot() == apt_before


def test_readme_walkthrough_runs_as_written(tmp_path):
    """Every line of the README's walkthrough, in bash with `set -e`, against the quickstart."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A five-minute walkthrough"):]
    block = re.search(r"```sh\n(.*?)\n```", section, re.S).group(1)
    port = free_port()
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    for path in rules.glob("*.yaml"):
        path.write_text(path.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKENGINE_")}
    env.update(TASKENGINE_HOME=str(tmp_path / "home"))
    cli = [sys.executable, "-m", "taskengine_core"]
    engine = subprocess.Popen([*cli, "run", "--rules", str(rules), "--listen", f"127.0.0.1:{port}"],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, engine)
        script = block.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
            "logs show RUN_ID", "logs show \"$(taskengine logs list --json | "
            f"{sys.executable} -c 'import json,sys; print(json.load(sys.stdin)[0][\"id\"])')\"")
        if shutil.which("curl") is None:
            script = re.sub(r"^curl .*?(?<!\\)$", "true", script, flags=re.M | re.S)
        prelude = f"set -euo pipefail\ntaskengine() {{ {' '.join(cli)} \"$@\"; }}\n"
        done = subprocess.run(["bash", "-c", prelude + script], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "alice-hello: data.name is 'bob', expected 'alice'" in done.stdout
        assert "local-inbox" in done.stdout and "say-hello" in done.stdout
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.communicate(timeout=60)


def wait_healthy(port: int, engine: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine.poll() is not None:
            raise AssertionError(f"the engine exited: {engine.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the engine did not become healthy")


def poll(read, *, count: int, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if len(got) >= count or time.monotonic() > deadline:
            assert len(got) == count, got
            return got
        time.sleep(0.2)
