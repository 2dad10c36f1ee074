"""cti-dialer benchmarks: the real daemon, a real redis-server and the bundled simulator.

Run: python bench/run.py [--quick] [--only throughput,pickup,idle,reload,scale]

Prints a table of figures with the targets next to them. Nothing here
passes or fails: it measures. Each part starts its own redis-server (a free
loopback port) and simulator; the daemon runs as its own process exactly as
in production (log level WARNING, as operators run it at high call rates).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cti_dialer.fsim import FreeSwitchSimulator, Outcome  # noqa: E402
from cti_dialer.redis_server import RedisServer, free_port  # noqa: E402

DOMAIN = "bench"
HOST = "bench-host"
TICKS = os.sysconf("SC_CLK_TCK")


def daemon_config(tmp, redis_url, esl_port, **dialer):
    path = os.path.join(tmp, "bench-%s.ini" % uuid.uuid4().hex[:6])
    extra = "".join("%s = %s\n" % kv for kv in dialer.items())
    with open(path, "w") as fh:
        fh.write("[dialer]\nhost = %s\ndomain = %s\ntimezone = UTC\n%s[redis]\nurl = %s\n"
                 "[esl]\nport = %d\n[log]\nlevel = WARNING\n" % (HOST, DOMAIN, extra, redis_url, esl_port))
    return path


def start_daemon(cfg, r, tmp):
    log = open(os.path.join(tmp, "daemon.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.cli", "run", "-c", cfg], stderr=log, cwd=ROOT)
    deadline = time.time() + 30
    while not r.exists("cti_dialer_alive@%s" % HOST):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit("daemon did not start; see %s" % log.name)
        time.sleep(0.02)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid):
    with open("/proc/%d/statm" % pid) as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def lines_and_groups(r, limit):
    r.hset("cti_line@%s" % DOMAIN, "l1", json.dumps({"params": {"gateway": "sofia/gateway/gw1/", "limit": limit}}))
    r.hset("cti_line_group@%s" % DOMAIN, "g1", json.dumps({"lines": ["l1"]}))


def task(r, name, limit, queue=None):
    r.hset("cti_queue_dialer_task@template", name, json.dumps({"params": {
        "line_group": ["g1"], "limit": limit, "number_queue": queue or "queue:" + name,
        "destination_extension": "8888"}}))


# The switch under test admits this many sessions per second and at once,
# so what is measured is the dialer, not FreeSWITCH's own throttle (the
# daemon paces itself under whatever the switch reports).
SWITCH_LIMITS = {"sps": 1_000_000, "max_sessions": 1_000_000}


def sim_process(port, script):
    script = {**SWITCH_LIMITS, **script}
    path = os.path.join(tempfile.gettempdir(), "fsim-%d.json" % port)
    with open(path, "w") as fh:
        json.dump(script, fh)
    proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.fsim", "--port", str(port), "--script", path,
                             "--log-level", "WARNING"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    proc.stdout.readline()          # "fsim listening on ..."
    return proc


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- the measurements ------------------------------------------------------------------

def throughput(tmp, calls, inflight):
    port = free_port()
    sim = sim_process(port, {"default": {"kind": "answer", "ring_ms": 0, "hold_ms": 0}})
    try:
        bare = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bare.py"), "--port", str(port),
                               "--inflight", str(inflight), "--seconds", "8"], capture_output=True, text=True,
                              timeout=120)
        bare_rate = float(bare.stdout.split("=")[-1].split()[0]) if bare.returncode == 0 else float("nan")
        with RedisServer() as server:
            r = redis.Redis.from_url(server.url)
            lines_and_groups(r, 1_000_000)
            task(r, "t1", inflight)
            proc = start_daemon(daemon_config(tmp, server.url, port, claim_batch=200), r, tmp)
            # Numbers are pushed once the daemon runs; the rate is taken from
            # its first result to its last, so the push does not count.
            numbers = [str(20_000_000 + i) for i in range(calls)]
            for i in range(0, calls, 5000):
                r.lpush("queue:t1", *numbers[i:i + 5000])
            results = "cti_dialer_result@%s" % DOMAIN
            first = None
            while True:
                n = r.xlen(results)
                if n and first is None:
                    first = (time.time(), n)
                if n >= calls:
                    break
                time.sleep(0.05)
            elapsed = time.time() - first[0]
            rate = (calls - first[1]) / elapsed
            cpu = cpu_seconds(proc.pid)
            stop(proc)
    finally:
        sim.terminate()
        sim.wait()
    return rate, bare_rate, cpu


def idle_daemon(tmp, tasks, sim):
    server = RedisServer().start()
    r = redis.Redis.from_url(server.url)
    lines_and_groups(r, 10_000)
    for i in range(tasks):
        task(r, "t%03d" % i, 10)
    proc = start_daemon(daemon_config(tmp, server.url, sim.port), r, tmp)
    status = "cti_dialer_task_status@%s" % HOST
    deadline = time.time() + 30
    while r.hlen(status) < tasks and time.time() < deadline:
        time.sleep(0.05)
    return server, r, proc


def pickup_and_idle(tmp, tasks, samples, idle_seconds):
    sim = FreeSwitchSimulator(port=0)
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=0)
    sim.start_in_thread()
    server, r, proc = idle_daemon(tmp, tasks, sim)
    try:
        time.sleep(2)                           # settle after start
        c0, t0 = cpu_seconds(proc.pid), time.time()
        time.sleep(idle_seconds)
        idle = (cpu_seconds(proc.pid) - c0) / (time.time() - t0) * 100
        latencies = []
        for i in range(samples):
            number = "3%07d" % i
            before = len(sim.originates())
            t = time.time()
            r.lpush("queue:t%03d" % (i * 37 % tasks), number)
            while len(sim.originates()) == before and time.time() < t + 5:
                time.sleep(0.0005)
            found = [o for o in sim.originates()[before:] if o.number == number]
            if found:
                latencies.append((found[0].ts - t) * 1000)
            time.sleep(0.02 + (i % 5) * 0.007)   # land at every phase of any polling
        return latencies, idle
    finally:
        stop(proc)
        sim.stop_thread()
        server.cleanup()


def reload_latency(tmp, samples):
    sim = FreeSwitchSimulator(port=0)
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=60_000)
    sim.start_in_thread()
    server, r, proc = idle_daemon(tmp, 0, sim)
    try:
        out = []
        for i in range(samples):
            name = "r%02d" % i
            task(r, name, 1)
            r.publish("config@all", json.dumps({"type": "config_change", "table": "cti_queue_dialer_task",
                                                "key": name}))
            r.lpush("queue:" + name, "4%03d1" % i, "4%03d2" % i)
            while len([o for o in sim.originates() if o.number.startswith("4%03d" % i)]) < 1:
                time.sleep(0.001)
            time.sleep(0.1)
            task(r, name, 2)                    # the new limit lets the second number go
            t = time.time()
            r.publish("config@all", json.dumps({"type": "config_change", "table": "cti_queue_dialer_task",
                                                "key": name}))
            deadline = t + 5
            while time.time() < deadline:
                second = [o for o in sim.originates() if o.number == "4%03d2" % i]
                if second:
                    out.append((second[0].ts - t) * 1000)
                    break
                time.sleep(0.0005)
        return out
    finally:
        stop(proc)
        sim.stop_thread()
        server.cleanup()


def scale(tmp, tasks, calls):
    port = free_port()
    sim = sim_process(port, {"default": {"kind": "answer", "ring_ms": 0, "hold_ms": 600_000}})
    try:
        with RedisServer() as server:
            r = redis.Redis.from_url(server.url)
            lines_and_groups(r, calls * 2)
            per_task = calls // tasks
            pipe = r.pipeline(transaction=False)
            for i in range(tasks):
                task(r, "s%04d" % i, per_task)
                for j in range(per_task):
                    pipe.lpush("queue:s%04d" % i, str(50_000_000 + i * 1000 + j))
            pipe.execute()
            proc = start_daemon(daemon_config(tmp, server.url, port, claim_batch=200), r, tmp)
            status = "cti_dialer_status@%s" % HOST
            started = time.time()
            while time.time() - started < 300:
                up = int(r.hget(status, "active_calls") or 0)
                if up >= calls:
                    break
                time.sleep(0.5)
            time.sleep(3)
            rss = rss_mb(proc.pid)
            stop(proc)
            return up, rss, time.time() - started
    finally:
        sim.terminate()
        sim.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller runs (a rough look in about a minute).")
    parser.add_argument("--only", default="throughput,pickup,idle,reload,scale")
    args = parser.parse_args()
    only = set(args.only.split(","))
    q = args.quick
    rows = []
    with tempfile.TemporaryDirectory(prefix="cti-bench-") as tmp:
        if "throughput" in only:
            rate, bare, cpu = throughput(tmp, 5000 if q else 30000, 200)
            rows += [("throughput, daemon (answer+hangup at once)", "%.0f calls/s" % rate, ""),
                     ("throughput, bare gevent+greenswitch loop", "%.0f calls/s" % bare, ""),
                     ("ratio daemon / bare", "%.2f" % (rate / bare), ">= 0.5 (aim 0.8)")]
        if "pickup" in only or "idle" in only:
            lat, idle = pickup_and_idle(tmp, 100, 60 if q else 200, 5 if q else 20)
            rows += [("pickup latency LPUSH->originate, 100 idle tasks, p50", "%.1f ms" % pct(lat, 0.5), ""),
                     ("pickup latency, p99", "%.1f ms" % pct(lat, 0.99), "< 20 ms"),
                     ("idle CPU, 100 enabled tasks, empty queues", "%.2f %% of a core" % idle, "< 1 %")]
        if "reload" in only:
            lat = reload_latency(tmp, 10 if q else 30)
            rows += [("reload PUBLISH -> new limit in effect, p50", "%.1f ms" % pct(lat, 0.5), ""),
                     ("reload latency, max", "%.1f ms" % max(lat), "< 100 ms")]
        if "scale" in only:
            up, rss, took = scale(tmp, 100 if q else 1000, 2000 if q else 10000)
            rows += [("RSS with %d calls up, %d tasks" % (up, 100 if q else 1000), "%.0f MB" % rss, "< 200 MB")]
    width = max(len(r[0]) for r in rows)
    print("\n%-*s  %-22s  %s" % (width, "measure", "figure", "target"))
    print("-" * (width + 40))
    for name, figure, target in rows:
        print("%-*s  %-22s  %s" % (width, name, figure, target))
    print("\nschedule poll cost with 1,000,000 members: python bench/schedule_poll.py")


if __name__ == "__main__":
    main()
