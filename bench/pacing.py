"""Agent-aware pacing figures: agent occupancy and abandon rate for a few campaign shapes.

Run: python bench/pacing.py [--seconds 60] [--only NAME,...]

Each shape runs the real daemon against a real redis-server and the
simulator's mod_callcenter queue, time-compressed (``--compress``, default 60:
a 60 s talk takes 1 s, a simulated hour one minute; the US rule's 2 s window
is 2/60 s... rounded up to ``agent_wait`` below). It prints, per shape,
occupancy (talk time / time agents were available) and abandon rate (live
answers not with an agent within ``agent_wait`` / live answers), over the
run after the first results, and every 10 s while it runs; and the daemon's
CPU (one core = 100 %), which time compression multiplies as it does calls.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.run import DOMAIN, HOST, cpu_seconds, daemon_config, start_daemon, stop  # noqa: E402
from cti_dialer.fsim import FreeSwitchSimulator, Outcome, OutcomeMix  # noqa: E402
from cti_dialer.redis_server import RedisServer  # noqa: E402

QUEUE = "sales@default"
# name: (mode, agents, answer rate, talk s, wrap-up s, ring s of answered calls, ring s of unanswered)
SHAPES = {
    "predictive-20": ("predictive", 20, 0.30, 60, 0, (6, 9, 12, 15, 18), 24),
    "predictive-50": ("predictive", 50, 0.30, 60, 5, (6, 9, 12, 15, 18), 24),
    "predictive-10-short": ("predictive", 10, 0.40, 30, 0, (6, 9, 12, 15, 18), 24),
    "progressive-10": ("progressive", 10, 0.30, 60, 0, (6, 9, 12, 15, 18), 24),
}


def run_shape(name, seconds, compress, tmp):
    mode, n_agents, answer_rate, talk, wrap, rings, no_ring = SHAPES[name]
    scale = 1000.0 / compress
    server = RedisServer()
    server.start()
    r = redis.Redis.from_url(server.url)
    sim = FreeSwitchSimulator(port=0)
    sim.start_in_thread()
    try:
        agent_wait = max(0.05, 2.0 / compress)
        # Callers not with an agent in agent_wait hang up, as after the
        # message the US rule requires at 2 s: they never take an agent later.
        sim.callcenter.add_queue(QUEUE, "8888", patience_ms=int(agent_wait * 1000))
        for i in range(n_agents):
            sim.callcenter.add_agent("agent%02d" % i, QUEUE, talk_ms=int(talk * scale), wrap_up_ms=int(wrap * scale))
        each = answer_rate / len(rings)
        sim.default_outcome = OutcomeMix(
            [(each, Outcome.answer(ring_ms=int(s * scale), hold_ms=None)) for s in rings]
            + [(1 - answer_rate, Outcome.no_answer(ring_ms=int(no_ring * scale)))], seed=5)
        r.hset("cti_line@%s" % DOMAIN, "l1", json.dumps({"params": {"gateway": "sofia/gateway/gw1/", "limit": 2000}}))
        r.hset("cti_line_group@%s" % DOMAIN, "g1", json.dumps({"lines": ["l1"]}))
        r.lpush("queue:p", *[str(10_000_000 + i) for i in range(int(n_agents * seconds * 2 / talk * compress / answer_rate))])
        r.hset("cti_queue_dialer_task@template", "p", json.dumps({"params": {
            "line_group": ["g1"], "limit": 1000, "number_queue": "queue:p", "destination_extension": "8888",
            "pacing": {"mode": mode, "queue": QUEUE, "agent_wait": agent_wait,
                       "abandon_window": 1800.0 / compress}}}))
        cfg = daemon_config(tmp, server.url, sim.port)
        if os.environ.get("PACING_LOG"):
            # The pacer's every decision, for tuning: PACING_LOG=DEBUG python bench/pacing.py
            with open(cfg) as fh:
                text = fh.read().replace("level = WARNING", "level = " + os.environ["PACING_LOG"])
            with open(cfg, "w") as fh:
                fh.write(text)
        proc = start_daemon(cfg, r, tmp)
        try:
            stream = "cti_dialer_result@%s" % DOMAIN
            while r.xlen(stream) < 20:
                time.sleep(0.05)
            base, seen = sim.callcenter.stats(QUEUE), r.xrevrange(stream, count=1)[0][0]
            first = base
            live = abandoned = calls = 0
            t0, cpu0 = time.time(), cpu_seconds(proc.pid)
            while time.time() - t0 < seconds:
                time.sleep(10 if seconds >= 20 else seconds)
                entries = r.xrange(stream, "(" + seen.decode())
                if entries:
                    seen = entries[-1][0]
                lv = [f for _, f in entries if f.get(b"answered") == b"1"]
                ab = [f for f in lv if f.get(b"abandoned") == b"1"]
                now_stats = sim.callcenter.stats(QUEUE)
                occ = (now_stats["talk_ms"] - base["talk_ms"]) / max(1, now_stats["available_ms"] - base["available_ms"])
                status = json.loads(r.hget("cti_dialer_task_status@%s" % HOST, "p") or "{}")
                print("  %-20s t=%3.0fs occupancy %5.1f%%  abandon %5.2f%% (%d/%d)  risk %.4f  calls %d" % (
                    name, time.time() - t0, occ * 100, 100.0 * len(ab) / max(1, len(lv)), len(ab), len(lv),
                    status.get("pacing_risk", 0), len(entries)), flush=True)
                base = now_stats
                live, abandoned, calls = live + len(lv), abandoned + len(ab), calls + len(entries)
            end = sim.callcenter.stats(QUEUE)
            cpu = (cpu_seconds(proc.pid) - cpu0) / (time.time() - t0)
            occupancy = (end["talk_ms"] - first["talk_ms"]) / max(1, end["available_ms"] - first["available_ms"])
            return occupancy, abandoned / max(1, live), live, calls, cpu
        finally:
            stop(proc)
    finally:
        sim.stop_thread()
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="real seconds per shape (default 60: an hour at 60x)")
    ap.add_argument("--compress", type=float, default=60.0)
    ap.add_argument("--only", default="", help="comma-separated shape names (%s)" % ", ".join(SHAPES))
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SHAPES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows.append((name,) + run_shape(name, args.seconds, args.compress, tmp))
    print("\n%-22s %10s %9s %6s %7s %6s" % ("shape", "occupancy", "abandon", "live", "calls", "cpu"))
    for name, occupancy, rate, live, calls, cpu in rows:
        mode, agents, p, talk, wrap, _, _ = SHAPES[name]
        print("%-22s %9.1f%% %8.2f%% %6d %7d %5.0f%%   (%s, %d agents, %d%% answer, %d s talk, %d s wrap-up)" % (
            name, occupancy * 100, rate * 100, live, calls, cpu * 100, mode, agents, p * 100, talk, wrap))


if __name__ == "__main__":
    main()
