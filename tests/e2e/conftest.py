"""The real daemon process against a real redis-server and the simulator over TCP."""
import json
import os
import signal
import subprocess
import sys

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome
from tests.conftest import wait_for

HOST = "fs1"
DOMAIN = "test"


@pytest.fixture
def sim():
    s = FreeSwitchSimulator(host="127.0.0.1", port=0, password="ClueCon")
    s.default_outcome = Outcome.answer(ring_ms=0, hold_ms=0)
    s.start_in_thread()
    yield s
    s.stop_thread()


class DaemonProc:
    """One ``cti-dialer run`` process with its own config file and log."""

    def __init__(self, tmp_path, redis_url, esl_port, host=HOST, extra=None, env=None):
        self.host = host
        self.env = env or {}
        self.cfg = tmp_path / ("%s.ini" % host)
        self.logfile = tmp_path / ("%s.log" % host)
        sections = {
            "dialer": {"host": host, "domain": DOMAIN, "timezone": "UTC", "idle_poll_interval": "0.05",
                       "reload_interval": "30", "throttle_backoff": "0.2", "throttle_backoff_max": "1"},
            "redis": {"url": redis_url},
            "esl": {"host": "127.0.0.1", "port": str(esl_port), "password": "ClueCon",
                    "connect_timeout": "2", "command_timeout": "3", "reconnect_max": "1"},
            "log": {"level": "DEBUG"},
        }
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        self.cfg.write_text("".join(
            "[%s]\n%s\n" % (s, "".join("%s = %s\n" % kv for kv in v.items())) for s, v in sections.items()))
        self.proc = None

    def start(self, wait_ready=True):
        self._log = open(self.logfile, "ab")
        self._offset = self.logfile.stat().st_size
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.cli", "run", "-c", str(self.cfg)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            self.wait_log("ready: connected to Redis", timeout=20)
        return self

    def log(self):
        return self.logfile.read_text(errors="replace")[self._offset:]

    def wait_log(self, text, timeout=10):
        def found():
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited (%s):\n%s" % (self.proc.returncode, self.log()[-4000:]))
            return text in self.log()
        try:
            wait_for(found, timeout, message=repr(text))
        except AssertionError:
            raise AssertionError("%r not in daemon log:\n%s" % (text, self.log()[-4000:])) from None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop within %ss:\n%s" % (timeout, self.log()[-4000:]))
        self._log.close()
        return code

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._log.close()


@pytest.fixture
def daemon_factory(tmp_path, redis_server, sim, r):
    started = []

    def make(host=HOST, extra=None, start=True, esl_port=None, env=None):
        d = DaemonProc(tmp_path, redis_server.url, esl_port or sim.port, host=host, extra=extra, env=env)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


# --- what operators do -----------------------------------------------------------

def put_task(r, name, params, variables=None, scope="template", notify=True):
    doc = {"params": params}
    if variables is not None:
        doc["variables"] = variables
    r.hset("cti_queue_dialer_task@%s" % scope, name, json.dumps(doc))
    if notify:
        publish(r, "cti_queue_dialer_task", name, host=None if scope == "template" else scope)


def put_line(r, name, gateway, limit=10, prefix="", enable=True, variables=None, notify=True):
    doc = {"params": {"enable": enable, "gateway": gateway, "limit": limit, "prefix": prefix}}
    if variables is not None:
        doc["variables"] = variables
    r.hset("cti_line@%s" % DOMAIN, name, json.dumps(doc))
    if notify:
        publish(r, "cti_line", name)


def put_group(r, name, lines, notify=True):
    r.hset("cti_line_group@%s" % DOMAIN, name, json.dumps({"lines": lines}))
    if notify:
        publish(r, "cti_line_group", name)


def publish(r, table, key=None, host=None):
    msg = {"type": "config_change", "table": table}
    if key is not None:
        msg["key"] = key
    r.publish("config@%s" % (host or "all"), json.dumps(msg))


def push(r, queue, *entries):
    """LPUSH in the given order: the first entry is the oldest, dialed first."""
    for entry in entries:
        r.lpush(queue, entry if isinstance(entry, (str, bytes)) else json.dumps(entry))


def results(r):
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in r.xrange("cti_dialer_result@%s" % DOMAIN)]


def rejected(r):
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in r.xrange("cti_dialer_rejected@%s" % DOMAIN)]


def basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 10),), groups=(("g1", ("l1",)),)):
    for name, gw, limit in lines:
        put_line(r, name, gw, limit=limit, notify=False)
    for name, members in groups:
        put_group(r, name, list(members), notify=False)
    publish(r, "cti_line")
    publish(r, "cti_line_group")


def task_params(**kw):
    params = {"line_group": ["g1"], "limit": 10, "number_queue": "queue:t1", "destination_extension": "8888"}
    params.update(kw)
    return params


def wait_settled(r, task="t1", queue="queue:t1", hosts=(HOST,), timeout=15):
    """Wait until nothing of ``task`` is left to dial: its queue, its pending redials
    and the hosts' in-flight hashes are all empty, read in one atomic step.

    Every claim moves a number into an in-flight hash in the same step that
    takes it, and its result is written in the same step that removes it, so
    from then on no originate can come and the results are final.
    """
    def settled():
        pipe = r.pipeline(transaction=True)
        pipe.llen(queue)
        pipe.zcard("cti_dialer_retry@%s:%s" % (DOMAIN, task))
        for host in hosts:
            pipe.hlen("cti_dialer_inflight@%s" % host)
        return not any(pipe.execute())
    wait_for(settled, timeout, message="%s settled (queue, redials and in-flight empty)" % task)
