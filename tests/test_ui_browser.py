"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which
``scripts/test`` installs), driven by Selenium. Each test saves a screenshot in its temporary
directory."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import requests

from tests.dashboard_support import TOKENS, dashboard  # noqa: F401 - fixture
from tests.html_check import check_page

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian's chromium and chromium-driver are not installed (scripts/test installs them)")
WAIT = 15  # seconds a page gets to show what the test waits for (htmx refreshes every 2 s)


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not reach for the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="taskengine-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, dashboard, tmp_path, request):
    """The browser on a fresh dashboard, signed out; a screenshot is saved when the test ends."""
    browser.delete_all_cookies()
    yield browser
    browser.save_screenshot(str(tmp_path / f"{request.node.name}.png"))
    assert (tmp_path / f"{request.node.name}.png").stat().st_size > 0


def wait_until(driver, condition, message: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # htmx swaps elements while the test reads them: a stale element is read again next poll
    return WebDriverWait(driver, WAIT, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition, message)


def sign_in(driver, dashboard, role: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(dashboard.base + "/ui")
    wait_until(driver, lambda d: "/ui/login" in d.current_url, "the dashboard did not ask to sign in")
    driver.find_element(By.ID, "token").send_keys(TOKENS[role])
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_until(driver, lambda d: d.find_elements(By.ID, "health"), "the overview did not show after sign-in")


def test_sign_in_shows_the_overview(page, dashboard):
    from selenium.webdriver.common.by import By

    sign_in(page, dashboard, "viewer")
    assert page.find_element(By.ID, "health").text == "running"
    assert "watch (viewer)" in page.find_element(By.CSS_SELECTOR, "header .who").text
    check_page(page.page_source if page.page_source.startswith("<!DOCTYPE") else "<!DOCTYPE html>" + page.page_source)


def test_a_run_appears_live_after_an_event_is_posted(page, dashboard):
    from selenium.webdriver.common.by import By

    sign_in(page, dashboard, "viewer")
    page.get(dashboard.base + "/ui/runs")
    assert "No runs match." in page.find_element(By.ID, "run-rows").text
    posted = requests.post(dashboard.base + "/events", json={"type": "demo.hello", "data": {"name": "live"}},
                           headers={"Authorization": f"Bearer {TOKENS['emit']}"})
    assert posted.status_code == 202
    row = wait_until(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-rows tr[id^=run-]"),
                     "the new run never appeared without a reload")
    assert "greet" in row[0].text
    wait_until(page, lambda d: "succeeded" in d.find_element(By.ID, "run-rows").text,
               "the run's status did not update live")


def test_the_trace_of_a_failed_run(page, dashboard):
    from selenium.webdriver.common.by import By

    event_id = dashboard.engine.emit("demo.fail", {"why": "browser"})
    sign_in(page, dashboard, "viewer")
    page.get(dashboard.base + "/ui/runs?status=failed")
    link = wait_until(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-rows a[href^='/ui/runs/']"),
                      "the failed run is not listed")
    link[0].click()
    wait_until(page, lambda d: d.find_elements(By.ID, "run-status"), "the run page did not open")
    wait_until(page, lambda d: d.find_element(By.ID, "run-status").text == "failed", "the run is not failed")
    text = page.find_element(By.TAG_NAME, "main").text
    assert event_id in text and "demo.fail" in text and "broken" in text and "matched" in text


def test_disable_and_run_now_are_audited(page, dashboard):
    from selenium.webdriver.common.by import By

    sign_in(page, dashboard, "operator")
    page.get(dashboard.base + "/ui/tasks")
    page.find_element(By.CSS_SELECTOR, "#task-greet button.toggle").click()
    wait_until(page, lambda d: d.find_element(By.CSS_SELECTOR, "#task-greet .state").text == "disabled",
               "the row did not swap to disabled")
    assert dashboard.rows("SELECT enabled FROM tasks WHERE name = 'greet'") == [(0,)]
    page.get(dashboard.base + "/ui/tasks/greet")
    page.find_element(By.ID, "params").send_keys('{"argv": ["echo", "clicked"]}')
    page.find_element(By.CSS_SELECTOR, "#run-now button").click()
    wait_until(page, lambda d: "/ui/runs/" in d.current_url, "run now did not open the new run")
    wait_until(page, lambda d: "clicked" in d.find_element(By.TAG_NAME, "main").text,
               "the run's output did not show up live")
    assert dashboard.rows("SELECT actor, action FROM audit WHERE source = 'ui' ORDER BY id") == [
        ("ui:ops", "disabled"), ("ui:ops", "run")]


def test_redeliver_from_the_delivery_page(page, dashboard):
    from selenium.webdriver.common.by import By

    sign_in(page, dashboard, "operator")
    page.get(dashboard.base + "/ui/webhooks")
    page.find_element(By.CSS_SELECTOR, "#destinations button").click()  # send a test
    wait_until(page, lambda d: "/ui/webhooks/deliveries/" in d.current_url, "no delivery page")
    delivery = page.current_url.rsplit("/", 1)[1]

    def attempts() -> int:
        return dashboard.rows("SELECT count(*) FROM webhook_attempts WHERE delivery_id = ?", (delivery,))[0][0]

    wait_until(page, lambda d: attempts() == 1, "the test delivery was not attempted")
    page.refresh()
    page.find_element(By.ID, "redeliver").click()
    wait_until(page, lambda d: attempts() == 2, "redeliver made no new attempt")
    assert ("ui:ops", "redeliver") in dashboard.rows("SELECT actor, action FROM audit WHERE source = 'ui'")


def test_a_post_without_csrf_from_the_page_is_refused(page, dashboard):
    sign_in(page, dashboard, "admin")
    status = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/ui/tasks/greet/disable', {method: 'POST', credentials: 'same-origin'})"
        ".then(r => done(r.status)).catch(e => done(String(e)));")
    assert status == 403
    assert dashboard.rows("SELECT enabled FROM tasks WHERE name = 'greet'") == [(1,)]
    assert dashboard.rows("SELECT count(*) FROM audit WHERE source = 'ui'") == [(0,)]
