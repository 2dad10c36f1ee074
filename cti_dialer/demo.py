"""``cti-dialer demo``: the whole path on one machine with nothing installed.

An embedded redis-server, the bundled FreeSWITCH simulator and the real
daemon process: a sample task with two line groups (the first one's gateway
is down, so every call fails over), numbers with mixed outcomes, live
progress, and a per-cause summary from the results stream.
"""
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import click
import redis

from . import settings
from .admin import Admin
from .fsim import FreeSwitchSimulator, Outcome
from .redis_server import RedisServer

DOMAIN = "demo"
HOST = "demo-host"
QUEUE = "queue:demo"


def _setup(admin, numbers, sim):
    admin.entry_set("line", "trunk-a", {"params": {"gateway": "sofia/gateway/trunk-a/", "limit": 30}})
    admin.entry_set("line", "trunk-b", {"params": {"gateway": "sofia/gateway/trunk-b/", "limit": 25, "prefix": "0"},
                                        "variables": {"origination_caller_id_number": "4001"}})
    admin.entry_set("group", "primary", {"lines": ["trunk-a"]})
    admin.entry_set("group", "backup", {"lines": ["trunk-b"]})
    admin.task_set("demo", {
        "params": {"enable": True, "line_group": ["primary", "backup"], "limit": 40,
                   "number_queue": QUEUE, "destination_extension": "8888",
                   "destination_dialplan": "XML", "destination_context": "default"},
        "variables": {"absolute_codec_string": "pcma,pcmu,g729", "ignore_early_media": True},
    })
    # trunk-a is down: every call fails over to trunk-b, which dials "0" + number.
    sim.script_gateway("trunk-a", Outcome.fail("GATEWAY_DOWN"))
    rng = random.Random(7)
    entries = []
    for i in range(numbers):
        number = "1380000%04d" % i
        roll = rng.random()
        if roll < 0.15:
            sim.script_number("0" + number, Outcome.busy(ring_ms=rng.randint(50, 200)))
        elif roll < 0.30:
            sim.script_number("0" + number, Outcome.no_answer(ring_ms=rng.randint(100, 300)))
        elif roll < 0.35:
            sim.script_number("0" + number, Outcome.reject(ring_ms=50))
        if i % 10 == 0:
            entries.append(json.dumps({"params": {"number": number},
                                       "variables": {"origination_caller_id_name": "Demo%d" % i}}))
        else:
            entries.append(number)
    # A hostile entry, pushed unchecked: the daemon rejects it with a record
    # and never sends it to the switch.
    entries.append("1000 &system(touch /tmp/x)")
    admin.queue_push(entries, queue=QUEUE)
    return len(entries)


def run_demo(numbers=200, keep=False):
    click.echo("cti-dialer demo: embedded Redis + FreeSWITCH simulator + the real daemon")
    with tempfile.TemporaryDirectory(prefix="cti-demo-") as tmp, RedisServer() as server:
        sim = FreeSwitchSimulator(host="127.0.0.1", port=0, password="ClueCon")
        sim.default_outcome = Outcome.answer(ring_ms=100, hold_ms=400)
        sim.start_in_thread()
        r = redis.Redis.from_url(server.url)
        cfg = os.path.join(tmp, "demo.ini")
        cfg_text = ("[dialer]\nhost = %s\ndomain = %s\ntimezone = UTC\nidle_poll_interval = 0.05\n"
                    "[redis]\nurl = %s\n[esl]\nhost = 127.0.0.1\nport = %d\npassword = ClueCon\n"
                    "[log]\nlevel = WARNING\n" % (HOST, DOMAIN, server.url, sim.port))
        with open(cfg, "w") as fh:
            fh.write(cfg_text)
        admin = Admin(r, settings.load(cfg, text=cfg_text))
        total = _setup(admin, numbers, sim)
        click.echo("redis-server at %s, simulator at 127.0.0.1:%d, %d numbers queued on task 'demo'"
                   % (server.url, sim.port, total))
        proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.cli", "run", "-c", cfg])
        code = 1
        try:
            code = _watch(r, admin.keys, total, proc)
            if keep:
                click.echo("--keep: Redis at %s stays up; Ctrl-C to stop" % server.url)
                while proc.poll() is None:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(15)
            sim.stop_thread()
            r.close()
        return code


def _watch(r, keys, total, proc, timeout=600):
    started = time.monotonic()
    done = 0
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            click.echo("the daemon exited with status %s" % proc.returncode, err=True)
            return 1
        done = r.xlen(keys.results)
        active = r.hlen(keys.inflight)
        # One line per update when piped (logs, CI); redrawn in place on a terminal.
        tty = sys.stdout.isatty()
        click.echo("%s%5.1fs  finished %d/%d  in flight %d  queued %d   " % (
            "\r" if tty else "", time.monotonic() - started, done, total, active, r.llen(QUEUE)), nl=not tty)
        if done >= total and active == 0:
            break
        time.sleep(0.5)
    click.echo("")
    causes = collections.Counter()
    failovers = 0
    for _, fields in r.xrange(keys.results):
        causes[fields[b"cause"].decode()] += 1
        failovers += fields.get(b"try", b"1") != b"1"
    click.echo("per-cause summary (%d results, %d after failover from trunk-a to trunk-b):" % (done, failovers))
    for cause, count in causes.most_common():
        click.echo("  %-24s %5d" % (cause, count))
    rejected = r.xrange(keys.rejected)
    for _, fields in rejected:
        click.echo("rejected %s from %s: %s" % (fields[b"kind"].decode(), fields[b"source"].decode(),
                                                fields[b"reason"].decode()))
    if done < total:
        click.echo("not every number finished within %ss" % timeout, err=True)
        return 1
    return 0
