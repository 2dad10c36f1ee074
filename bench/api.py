"""HTTP API throughput and latency.

Run: python bench/api.py [--batches 100] [--tasks 1000] [--samples 2000]

Starts its own redis-server and one real ``cti-dialer api`` process (gevent's
WSGI server, as systemd runs it), and prints:
- numbers added per second through POST /api/v1/tasks/{name}/numbers in
  batches of 1,000 (each with its own Idempotence-Key, one client connection,
  requests one after another);
- the latency of GET /api/v1/tasks/{name}/status with --tasks tasks defined
  and a daemon-style status record for each (p50, p99, max), and of the full
  GET /api/v1/tasks listing;
- the API process's resident memory at the end.
Figures are printed, not asserted.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import redis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cti_dialer.redis_server import RedisServer  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
HOST = "bench-host"
DOMAIN = "bench"


def start_api(redis_url, tmp):
    cfg = os.path.join(tmp, "api.ini")
    with open(cfg, "w") as fh:
        fh.write("[dialer]\nhost = %s\ndomain = %s\ntimezone = UTC\n[redis]\nurl = %s\n"
                 "[api]\nlisten = 127.0.0.1:0\ntokens = %s\n[log]\nlevel = INFO\n"
                 % (HOST, DOMAIN, redis_url, TOKEN))
    log = open(os.path.join(tmp, "api.log"), "w+b")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.cli", "api", "-c", cfg], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        text = open(log.name, errors="replace").read()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit("api exited:\n" + text)
        time.sleep(0.05)
    raise SystemExit("api did not start")


def request(conn, method, path, body=None, headers=None):
    h = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit("%s %s -> %d %s" % (method, path, resp.status, data[:500]))
    return data


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=100, help="batches of 1,000 numbers")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=2000, help="status requests")
    args = ap.parse_args()
    server = RedisServer().start()
    tmp = tempfile.mkdtemp(prefix="cti-api-bench-")
    proc = None
    try:
        r = redis.Redis.from_url(server.url)
        proc, port = start_api(server.url, tmp)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        rss_start = rss_kb(proc.pid)
        params = {"line_group": ["g1"], "limit": 10, "destination_extension": "8888"}
        request(conn, "PUT", "/api/v1/lines/l1", json.dumps({"params": {"gateway": "sofia/gateway/gw1/",
                                                                        "limit": 100}}))
        request(conn, "PUT", "/api/v1/groups/g1", json.dumps({"lines": ["l1"]}))
        request(conn, "PUT", "/api/v1/tasks/t0", json.dumps({"params": dict(params, number_queue="queue:t0")}))

        # 1. numbers per second, batches of 1,000
        bodies = [json.dumps(["1%03d%07d" % (b, i) for i in range(1000)]) for b in range(args.batches)]
        t0 = time.perf_counter()
        for b, body in enumerate(bodies):
            request(conn, "POST", "/api/v1/tasks/t0/numbers", body, {"Idempotence-Key": "bench-%d" % b})
        elapsed = time.perf_counter() - t0
        queued = r.llen("queue:t0")
        assert queued == 1000 * args.batches, queued
        print("numbers added: %d in %d batches of 1000: %.2f s, %.0f numbers/s, %.1f ms per batch"
              % (queued, args.batches, elapsed, queued / elapsed, elapsed / args.batches * 1000))

        # 2. task status with many tasks (written straight to Redis: the API is what is measured)
        pipe = r.pipeline(transaction=False)
        now = time.time()
        for i in range(args.tasks):
            name = "t%d" % i
            pipe.hset("cti_queue_dialer_task@template", name, json.dumps(
                {"params": dict(params, number_queue="queue:%s" % name)}))
            pipe.hset("cti_dialer_task_status@%s" % HOST, name, json.dumps({
                "state": "running", "reason": "", "active": 1, "limit": 10, "queue": "queue:" + name, "queued": 0,
                "redials_pending": 0, "dialed": 5, "answered": 3, "failed": 2, "rejected": 0, "last_error": "",
                "counters": "", "updated": now}))
            pipe.hset("cti_dialer_counter@%s:%s" % (DOMAIN, name), mapping={
                "results": 5, "originates": 5, "answered": 3, "failed": 2, "cause:USER_BUSY": 2})
        pipe.sadd("cti_dialer_hosts@%s" % DOMAIN, HOST)
        pipe.set("cti_dialer_alive@%s" % HOST, "1", ex=3600)
        pipe.execute()
        for i in range(50):        # warm up
            request(conn, "GET", "/api/v1/tasks/t%d/status" % i)
        lat = []
        for i in range(args.samples):
            t = time.perf_counter()
            request(conn, "GET", "/api/v1/tasks/t%d/status" % (i % args.tasks))
            lat.append((time.perf_counter() - t) * 1000)
        print("task status, %d tasks, %d requests: p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%.0f requests/s)"
              % (args.tasks, args.samples, statistics.median(lat), pct(lat, 99), max(lat),
                 len(lat) / (sum(lat) / 1000)))
        lat = []
        for _ in range(20):
            t = time.perf_counter()
            data = request(conn, "GET", "/api/v1/tasks")
            lat.append((time.perf_counter() - t) * 1000)
        assert len(json.loads(data)["items"]) == args.tasks
        print("task list (all %d with status), 20 requests: p50 %.1f ms  max %.1f ms"
              % (args.tasks, statistics.median(lat), max(lat)))
        print("api process RSS: %.1f MB at start, %.1f MB at the end" % (rss_start / 1024, rss_kb(proc.pid) / 1024))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        server.cleanup()


if __name__ == "__main__":
    main()
