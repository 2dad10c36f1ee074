"""Schedule poll cost against the size of the schedule set, and dial latency of a due member.

Run: python bench/schedule_poll.py [--members 1000000] [--samples 30]

Starts its own redis-server and the bundled simulator, fills
cti_schedule_dialer_number@bench with future members, and prints:
- the Redis time of one poll (ZRANGEBYSCORE -inf now LIMIT 0 50, what the
  daemon runs every schedule_poll_interval) from INFO commandstats, and its
  round trip seen by the client, at several set sizes;
- the time from ZADD of a due member to its originate at the switch, with the
  real daemon running against the full set.
Figures are printed, not asserted.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import redis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cti_dialer.fsim import FreeSwitchSimulator, Outcome  # noqa: E402
from cti_dialer.keys import Keys  # noqa: E402
from cti_dialer.redis_server import RedisServer  # noqa: E402
from cti_dialer.store import Store  # noqa: E402

DOMAIN = "bench"
KEYS = Keys("bench-host", DOMAIN)


def fill(r, upto, have, far_future):
    pipe = r.pipeline(transaction=False)
    for i in range(have, upto):
        member = '{"params":{"number":"%d","expires":0,"config":"c1"}}' % (10_000_000 + i)
        pipe.zadd(KEYS.schedule_numbers, {member: far_future + i})
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def poll_cost(r, store, polls=2000):
    r.config_resetstat()
    rtts = []
    for _ in range(polls):
        t0 = time.perf_counter()
        store.due_members(time.time(), 50)
        rtts.append(time.perf_counter() - t0)
    stats = r.info("commandstats").get("cmdstat_zrangebyscore", {})
    return stats.get("usec_per_call", float("nan")), statistics.median(rtts) * 1e6


def dial_latency(r, server, samples, members):
    sim = FreeSwitchSimulator(host="127.0.0.1", port=0, password="ClueCon")
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=0)
    sim.start_in_thread()
    r.hset("cti_line@%s" % DOMAIN, "l1", json.dumps({"params": {"gateway": "sofia/gateway/gw1/", "limit": 100}}))
    r.hset("cti_line_group@%s" % DOMAIN, "g1", json.dumps({"lines": ["l1"]}))
    r.hset("cti_schedule_dialer_config@%s" % DOMAIN, "c1",
           json.dumps({"params": {"line_group": ["g1"], "destination_extension": "8888"}}))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "bench.ini")
        with open(cfg, "w") as fh:
            fh.write("[dialer]\nhost = bench-host\ndomain = %s\ntimezone = UTC\n[redis]\nurl = %s\n"
                     "[esl]\nport = %d\n[log]\nlevel = WARNING\n" % (DOMAIN, server.url, sim.port))
        log = open(os.path.join(tmp, "daemon.log"), "wb")
        proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.cli", "run", "-c", cfg], stderr=log)
        try:
            deadline = time.time() + 20
            while not r.hexists("cti_dialer_status@bench-host", "heartbeat"):
                if time.time() > deadline:
                    raise SystemExit("daemon did not start")
                time.sleep(0.05)
            latencies = []
            for i in range(samples):
                number = "9%07d" % i
                before = len(sim.originates())
                t0 = time.time()
                r.zadd(KEYS.schedule_numbers, {'{"params":{"number":"%s","expires":0,"config":"c1"}}' % number: t0})
                deadline = t0 + 5
                while len(sim.originates()) == before and time.time() < deadline:
                    time.sleep(0.001)
                found = [o for o in sim.originates()[before:] if o.number == number]
                if found:
                    latencies.append(found[0].ts - t0)
                # spread samples over the poll cycle
                time.sleep(0.05 + (i % 7) * 0.013)
        finally:
            proc.terminate()
            proc.wait(15)
            sim.stop_thread()
    return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        store = Store(r, KEYS)
        far = time.time() + 86400 * 365
        have = 0
        print("schedule poll cost (ZRANGEBYSCORE -inf now LIMIT 0 50, nothing due)")
        print("%12s  %18s  %18s" % ("members", "redis usec/poll", "client rtt usec"))
        for size in sorted({0, 1_000, 100_000, args.members}):
            if size > args.members:
                continue
            t0 = time.time()
            fill(r, size, have, far)
            have = size
            redis_us, rtt_us = poll_cost(r, store)
            print("%12d  %18.2f  %18.1f   (filled in %.1fs)" % (size, redis_us, rtt_us, time.time() - t0))
        latencies = dial_latency(r, server, args.samples, have)
        if latencies:
            latencies.sort()
            p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
            print("due member ZADD -> originate at the switch, %d members in the set, %d samples:"
                  % (have, len(latencies)))
            print("  p50 %.1f ms   p90 %.1f ms   max %.1f ms   (schedule_poll_interval 0.2 s)"
                  % (p(0.5), p(0.9), latencies[-1] * 1000))
        else:
            print("no due member was dialed")
        print("RSS of redis-server: %.0f MB" % (r.info("memory")["used_memory_rss"] / 1e6))


if __name__ == "__main__":
    main()
