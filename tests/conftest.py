"""Shared fixtures: a real redis-server per session, flushed for every test."""
import time

import pytest
import redis

from cti_dialer.redis_server import RedisServer


def wait_for(predicate, timeout=10.0, interval=0.01, message="condition"):
    """Poll until predicate() is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, message))
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def r(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


# Fault tests report their figures (numbers pushed, originated, lost,
# duplicated) at the end of the run, whether they pass or fail.
FAULT_FIGURES = []


@pytest.fixture
def fault_report(request):
    def report(line):
        FAULT_FIGURES.append("%-58s %s" % (request.node.name[:58], line))
    return report


def pytest_terminal_summary(terminalreporter):
    if FAULT_FIGURES:
        terminalreporter.section("fault test figures")
        for line in FAULT_FIGURES:
            terminalreporter.write_line(line)
