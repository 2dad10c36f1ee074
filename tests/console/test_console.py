"""The web console in a real headless chromium, against the real API, daemon and simulator.

Only the public HTTP API sits between the browser and Redis: the console is
served by ``cti-dialer api``, which reads and writes the keys the daemon
dials from; the simulator counts the originates the daemon really sends.
"""
import json
import time

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.console.conftest import READ_ONLY_TOKEN, TOKEN, ApiProc
from tests.e2e.conftest import DOMAIN, HOST, basic_setup, push, put_task, task_params

pytestmark = pytest.mark.e2e

QUEUE = "queue:t1"


def tid(name):
    return '[data-testid="%s"]' % name


class Console:
    """What a person sees and does in the console, by data-testid."""

    def __init__(self, driver, url):
        self.d = driver
        self.url = url

    def wait(self, predicate, timeout=20, message=""):
        return WebDriverWait(self.d, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(lambda _: predicate(), message)

    def find(self, testid, within=None):
        return (within or self.d).find_element(By.CSS_SELECTOR, tid(testid))

    def find_all(self, testid, within=None):
        return (within or self.d).find_elements(By.CSS_SELECTOR, tid(testid))

    def open(self):
        self.d.get(self.url)
        self.wait(lambda: self.find("login-form").is_displayed(), message="login form shown")

    def login(self, token):
        field = self.find("login-token")
        field.clear()
        field.send_keys(token)
        self.find("login-submit").click()

    def logged_in(self):
        return self.find("app").is_displayed() and not self.find("login").is_displayed()

    def task_row(self, name):
        for row in self.find_all("task-row"):
            if row.get_attribute("data-task") == name:
                return row
        raise NoSuchElementException("no task row %r" % name)

    def task_progress(self, name):
        bar = self.find("task-progress", self.task_row(name))
        return int(bar.get_attribute("data-processed")), int(bar.get_attribute("data-total"))

    def task_state(self, name):
        return self.find("task-state", self.task_row(name)).text

    def button(self, name, action):
        return self.find("task-" + action, self.task_row(name))

    def result_numbers(self):
        return [self.find("result-number", row).text for row in self.find_all("result-row")]


def originated(sim):
    return len(sim.originates())


def idle(r, sim):
    """Nothing claimed by the daemon and no channel up at the switch."""
    return not r.hlen("cti_dialer_inflight@%s" % HOST) and not sim.active_channels()


def hold_still(sample, seconds, message):
    """Assert that sample() keeps its value for ``seconds``: an absence can only be seen over time."""
    first = sample()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = sample()
        assert now == first, "%s: %r became %r" % (message, first, now)
        time.sleep(0.1)
    return first


@pytest.fixture
def dialing_setup(r, sim):
    # Calls held for a second and two at a time: 24 numbers take about 12 s,
    # long enough to watch the progress bar move and to pause half way.
    sim.default_outcome = Outcome.answer(ring_ms=100, hold_ms=1000)
    basic_setup(r)
    put_task(r, "t1", task_params(limit=2))


def test_login_watch_progress_pause_and_resume(r, sim, dialing_setup, daemon_factory, api_server, browser):
    daemon = daemon_factory()
    daemon.wait_log("task 't1' loaded")
    ui = Console(browser, api_server.url)
    ui.open()
    ui.login(TOKEN)
    ui.wait(ui.logged_in, message="console shown after login")
    assert not ui.find("read-only-badge").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 1
    ui.wait(lambda: ui.task_row("t1"), message="task t1 listed")
    ui.wait(lambda: ui.find("stream-status").get_attribute("data-state") == "live", message="live feed connected")
    rows_at_login = len(ui.find_all("result-row"))
    host = ui.wait(lambda: [h for h in ui.find_all("host-row") if h.get_attribute("data-host") == HOST],
                   message="the daemon's host listed")[0]
    assert ui.find("host-health", host).get_attribute("data-alive") == "true"
    line = ui.wait(lambda: [x for x in ui.find_all("line-row") if x.get_attribute("data-line") == "l1"],
                   message="line l1 listed")[0]
    assert ui.find("line-in-use", line).text.endswith("/ 10")

    numbers = ["8%04d" % i for i in range(24)]
    push(r, QUEUE, *numbers)

    # The bar moves: it shows some of the numbers processed, then more.
    def part_way():
        processed, total = ui.task_progress("t1")
        return (processed, total) if 0 < processed < total == len(numbers) else None
    first = ui.wait(part_way, message="t1 part-way through its 24 numbers")
    ui.wait(lambda: first[0] < ui.task_progress("t1")[0] < len(numbers), message="progress moving on")
    fill = ui.find("task-progress", ui.task_row("t1")).find_element(By.CSS_SELECTOR, ".bar-fill")
    assert 0 < float(fill.value_of_css_property("width")[:-2])
    assert ui.find("task-state", ui.task_row("t1")).text == "running"

    # Pause: the task shows paused and the daemon sends no more originates.
    ui.button("t1", "pause").click()
    ui.wait(lambda: ui.task_state("t1") == "paused", message="t1 shown paused")
    ui.wait(lambda: ui.button("t1", "resume").is_enabled() and not ui.button("t1", "pause").is_enabled(),
            message="resume offered instead of pause")
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1"))["params"]["enable"] is False
    wait_for(lambda: idle(r, sim), 10, message="calls taken before the pause have ended")
    # At two calls a second or so, three seconds would show several more
    # originates if the daemon were still dialing.
    paused_at = hold_still(lambda: (originated(sim), r.llen(QUEUE)), 3, "dialing while paused")
    assert 0 < paused_at[0] < len(numbers) and paused_at[1] > 0
    assert ui.task_progress("t1")[0] < len(numbers)

    # The live feed added rows without a reload, and the chart counted them.
    assert len(ui.find_all("result-row")) > rows_at_login
    ui.wait(lambda: int(ui.find("cause-chart").get_attribute("data-total")) >= paused_at[0] - 2,
            message="chart counting results")
    legend = {li.get_attribute("data-cause"): int(li.get_attribute("data-count"))
              for li in ui.find_all("cause-legend-item")}
    assert set(legend) == {"NORMAL_CLEARING"}

    # Resume: dialing goes on until every number is processed.
    ui.button("t1", "resume").click()
    ui.wait(lambda: ui.task_state("t1") == "running", message="t1 shown running again")
    wait_for(lambda: originated(sim) > paused_at[0], 10, message="originates after resume")
    ui.wait(lambda: ui.task_progress("t1") == (len(numbers), len(numbers)), timeout=40,
            message="all 24 processed")
    assert sorted(o.number for o in sim.originates()) == sorted(numbers)
    ui.wait(lambda: sorted(ui.result_numbers()) == sorted(numbers), message="every result listed live")

    # The filters narrow the table to one number.
    ui.find("results-filter-number").send_keys(numbers[5])
    ui.find("results-apply").click()
    ui.wait(lambda: ui.result_numbers() == [numbers[5]], message="results filtered by number")

    # The token went in a header only: no URL the page loaded carries it.
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and not [u for u in urls if TOKEN in u]
    assert TOKEN not in api_server.log()


def test_wrong_token_shows_the_login_error(api_server, browser):
    ui = Console(browser, api_server.url)
    ui.open()
    ui.login("not-a-token-the-api-knows-of")
    ui.wait(lambda: ui.find("login-error").is_displayed(), message="login error shown")
    assert "rejected" in ui.find("login-error").text
    assert not ui.find("app").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0
    # The right one still gets in afterwards.
    ui.login(TOKEN)
    ui.wait(ui.logged_in, message="console shown after a good token")
    assert not ui.find("login-error").is_displayed()


def test_read_only_token_gets_no_working_pause(r, sim, dialing_setup, daemon_factory, api_server, browser):
    daemon_factory().wait_log("task 't1' loaded")
    ui = Console(browser, api_server.url)
    ui.open()
    ui.login(READ_ONLY_TOKEN)
    ui.wait(ui.logged_in, message="console shown for a read-only token")
    assert ui.find("read-only-badge").is_displayed()
    ui.wait(lambda: ui.task_state("t1") == "running", message="t1 listed running")
    for action in ("pause", "resume", "stop"):
        assert not ui.button("t1", action).is_enabled(), action
    # Even a click dispatched by script changes nothing.
    browser.execute_script("arguments[0].click()", ui.button("t1", "pause"))
    browser.execute_script("arguments[0].click()", ui.button("t1", "stop"))
    assert not ui.find("confirm-dialog").is_displayed()
    hold_still(lambda: ui.task_state("t1"), 2.5, "state after clicking a read-only pause")
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1"))["params"].get("enable", True) is True


def test_stop_asks_first_then_moves_queued_numbers_aside(r, sim, dialing_setup, daemon_factory, api_server,
                                                         browser):
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=3000)
    daemon_factory().wait_log("task 't1' loaded")
    numbers = ["7%04d" % i for i in range(20)]
    push(r, QUEUE, *numbers)
    ui = Console(browser, api_server.url)
    ui.open()
    ui.login(TOKEN)
    ui.wait(lambda: ui.task_state("t1") == "running", message="t1 running")
    ui.button("t1", "stop").click()
    ui.wait(lambda: ui.find("confirm-dialog").is_displayed(), message="confirmation asked")
    ui.find("confirm-cancel").click()
    ui.wait(lambda: not ui.find("confirm-dialog").is_displayed(), message="dialog closed")
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1"))["params"].get("enable", True) is True

    ui.button("t1", "stop").click()
    ui.wait(lambda: ui.find("confirm-dialog").is_displayed(), message="confirmation asked again")
    ui.find("confirm-ok").click()
    ui.wait(lambda: ui.task_state("t1") == "stopped", message="t1 shown stopped")
    banner = ui.find("action-error")
    ui.wait(lambda: banner.is_displayed() and banner.get_attribute("data-kind") == "notice", message="stop notice")
    assert r.llen(QUEUE) == 0
    wait_for(lambda: idle(r, sim), 10, message="calls taken before the stop have ended")
    sent = hold_still(lambda: originated(sim), 2, "dialing after stop")
    assert sent < len(numbers)


def test_hostile_strings_from_redis_are_shown_as_text(r, sim, dialing_setup, api_server, browser):
    # Anyone who can write to Redis chooses task names and result fields.
    evil = '<img src=x onerror="window.__pwned=1">'
    put_task(r, evil, task_params(number_queue="queue:evil"))
    r.xadd("cti_dialer_result@%s" % DOMAIN, {"ts": "%.3f" % time.time(), "host": "fs1", "kind": "queue",
                                              "task": evil, "number": "<script>window.__pwned=2</script>",
                                              "cause": '"><svg onload=window.__pwned=3>', "verdict": "callee",
                                              "attempt": "1", "line": "l1"})
    ui = Console(browser, api_server.url)
    ui.open()
    ui.login(TOKEN)
    ui.wait(lambda: ui.task_row(evil), message="hostile task listed")
    assert ui.find("task-name", ui.task_row(evil)).text == evil
    ui.wait(lambda: "<script>window.__pwned=2</script>" in ui.result_numbers(), message="hostile result listed")
    ui.wait(lambda: ui.find_all("cause-legend-item"), message="chart legend drawn")
    assert browser.execute_script("return window.__pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script, main svg")


def test_live_feed_reconnects_after_the_api_restarts(r, sim, dialing_setup, daemon_factory, api_server, browser,
                                                     tmp_path, redis_server):
    daemon_factory().wait_log("task 't1' loaded")
    ui = Console(browser, api_server.url)
    ui.open()
    ui.login(TOKEN)
    ui.wait(lambda: ui.find("stream-status").get_attribute("data-state") == "live", message="live feed connected")
    api_server.stop()
    ui.wait(lambda: ui.find("stream-status").get_attribute("data-state") in ("reconnecting", "connecting"),
            message="console noticed the feed dropped")
    # The same config, so the same port and tokens: what a restart of the unit looks like.
    again = ApiProc(tmp_path, redis_server.url, name="api-again", port=api_server.port).start()
    try:
        ui.wait(lambda: ui.find("stream-status").get_attribute("data-state") == "live", timeout=40,
                message="live feed back after the restart")
        push(r, QUEUE, "89001")
        ui.wait(lambda: "89001" in ui.result_numbers(), message="a new result arrives through the new feed")
        assert ui.logged_in()
    finally:
        again.stop()
