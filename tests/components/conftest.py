"""One daemon's components wired on fakeredis and a fake switch: no sockets, no sleeps.

Tests call each component's ``loop(now)`` themselves, with the clock they
choose, and look at Redis and at what the fake switch was sent.
"""
import json
import re
import types

import fakeredis
import gevent.event
import pytest

from cti_dialer import settings
from cti_dialer.catalog import Catalog
from cti_dialer.keys import Keys
from cti_dialer.pacing import SendBudget
from cti_dialer.runtime import Health, Wakeups
from cti_dialer.store import Store
from cti_dialer.tracker import CallTracker
from cti_dialer.writer import ResultWriter

NOW = 1_700_000_000.0     # a Tuesday, 22:13 UTC
ALWAYS = {"work_hour": [{"begin": "0:00", "end": "0:00"}]}


class FakeSwitch:
    """What the call tracker needs of esl.EslClient; every originate is accepted."""

    def __init__(self):
        self.ready = gevent.event.Event()
        self.ready.set()
        self.sent = []
        self.up = set()

    def send_async(self, command):
        self.sent.append(command)
        result = gevent.event.AsyncResult()
        result.set(types.SimpleNamespace(headers={"Reply-Text": "+OK Job-UUID"}))
        return result

    def wait(self, result, timeout=None):
        return result.get()

    def api(self, command):
        return "true" if command.split()[-1] in self.up else "false"

    def uuids(self):
        return [re.search(r"Job-UUID: (\S+)", cmd).group(1) for cmd in self.sent]

    def numbers(self):
        return [re.search(r"\}\S*/(\S+) ", cmd).group(1) for cmd in self.sent]


class World:
    def __init__(self, **dialer):
        text = "[dialer]\nhost = fs1\ndomain = test\ntimezone = UTC\n" + "".join(
            "%s = %s\n" % kv for kv in dialer.items())
        self.config = settings.load(text=text)
        self.server = fakeredis.FakeServer()
        self.r = fakeredis.FakeRedis(server=self.server)
        self.keys = Keys("fs1", "test")
        self.store = Store(self.r, self.keys)
        self.switch = FakeSwitch()
        self.health = Health(self.switch.ready)
        self.health.redis_ok.set()
        self.wakeups = Wakeups()
        self.catalog = Catalog(store=self.store, keys=self.keys, tz=self.config.dialer_timezone,
                               reload_interval=self.config.dialer_reload_interval, wakeups=self.wakeups)
        self.writer = ResultWriter(self.store)
        self.budget = SendBudget(self.config.dialer_throttle_backoff, self.config.dialer_throttle_backoff_max)
        self.tracker = CallTracker(config=self.config, host="fs1", store=self.store, esl=self.switch,
                                   catalog=self.catalog, writer=self.writer, wakeups=self.wakeups,
                                   health=self.health, budget=self.budget)

    # --- what operators and upstream systems write ---------------------------
    def line(self, name, limit, gateway="sofia/gateway/gw/"):
        self.r.hset(self.keys.lines, name, json.dumps({"params": {"gateway": gateway, "limit": limit}}))

    def group(self, name, *lines):
        self.r.hset(self.keys.groups, name, json.dumps({"lines": list(lines)}))

    def task(self, name, groups=("g1",), limit=10, **params):
        doc = {"line_group": list(groups), "limit": limit, "number_queue": "q:" + name,
               "destination_extension": "8888", **ALWAYS, **params}
        self.r.hset(self.keys.task_template, name, json.dumps({"params": doc}))

    def results(self):
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in self.r.xrange(self.keys.results)]

    def rejected(self):
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in self.r.xrange(self.keys.rejected)]

    def write(self):
        """Let the result writer carry everything queued to Redis."""
        self.writer.loop(NOW)


@pytest.fixture
def world():
    return World()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/components/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.unit)
