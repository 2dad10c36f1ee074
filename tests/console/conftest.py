"""The web console in Debian's headless chromium, against a real ``cti-dialer api`` process.

The daemon, the simulator and redis-server come from the e2e fixtures; this
adds the API process (with a config file holding its tokens) and a browser.
"""
import os
import subprocess
import sys
import urllib.error
import urllib.request
from unittest import mock

import pytest

from cti_dialer.redis_server import free_port
from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, HOST, daemon_factory, sim  # noqa: F401  (fixtures used here)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Tokens must be 16..256 printable characters; these are test-only.
TOKEN = "console-test-token-rw-0123456789"
READ_ONLY_TOKEN = "console-test-token-ro-0123456789"


class ApiProc:
    """One ``cti-dialer api`` process on a port of its own."""

    def __init__(self, tmp_path, redis_url, name="api", port=None):
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d/" % self.port
        self.cfg = tmp_path / ("%s.ini" % name)
        self.logfile = tmp_path / ("%s.log" % name)
        self.cfg.write_text(
            "[dialer]\nhost = %s\ndomain = %s\ntimezone = UTC\n"
            "[redis]\nurl = %s\n"
            "[api]\nlisten = 127.0.0.1:%d\ntokens = %s, ro:%s\n"
            # Short, so the test also sees the console skip keepalive comments.
            "keepalive = 1\n"
            "[log]\nlevel = DEBUG\n"
            % (HOST, DOMAIN, redis_url, self.port, TOKEN, READ_ONLY_TOKEN))
        self.proc = None

    def start(self):
        self._log = open(self.logfile, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.cli", "api", "-c", str(self.cfg)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_for(self._healthy, 30, interval=0.1, message="cti-dialer api answering /healthz")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError("cti-dialer api exited (%s):\n%s" % (self.proc.returncode, self.log()[-4000:]))
        try:
            with urllib.request.urlopen(self.url + "healthz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log(self):
        return self.logfile.read_text(errors="replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()


@pytest.fixture
def api_server(tmp_path, redis_server, r):
    api = ApiProc(tmp_path, redis_server.url).start()
    yield api
    api.stop()


@pytest.fixture
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("%s and %s are needed: scripts/test.sh installs Debian's chromium and chromium-driver"
                    % (CHROMIUM, CHROMEDRIVER))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox",            # tests run as root
                "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    # With both paths given selenium has nothing to look up; selenium-manager
    # would otherwise try to download a browser and a driver, and switch
    # hosts and CI are offline. Make any attempt fail loudly.
    with mock.patch.object(SeleniumManager, "binary_paths",
                           side_effect=AssertionError("selenium-manager must not run")):
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
