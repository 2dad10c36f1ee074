"""The predictive pacer alone, against a model of a campaign: occupancy and abandon rate per simulated hour.

Run: python bench/pacing_model.py [--hours 60] [--agents 20] [--answer-rate 0.3] [--risk R --fixed]

No daemon, no switch, no Redis: ``cti_dialer.agent_pacing`` (the pure
decision code the daemon runs) decides every ``--look`` seconds against
agents with a fixed talk time and calls that answer at one of five times.
It shows what the controller can do with perfect information, and how
much one hour varies from another (each hour starts afresh, as the e2e
test does). Times are in talk times: a 60 s talk is 1.0. The daemon
against the simulator (``bench/pacing.py``) adds event and dispatch
latency.
"""
import argparse
import multiprocessing
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cti_dialer import agent_pacing as ap  # noqa: E402

ANSWER_AFTER = (0.1, 0.15, 0.2, 0.25, 0.3)     # 6 to 18 s for a 60 s talk
NO_ANSWER_AFTER = 0.4                          # 24 s
AGENT_WAIT = 0.05                              # 3 s, as in bench/pacing.py and the e2e test


def one_hour(args):
    seed, opts = args
    rng = random.Random(seed)
    spec = ap.parse({"mode": "predictive", "queue": "q", "agent_wait": AGENT_WAIT, "abandon_window": 30})   # 30 min
    m = ap.Measures(spec)
    if opts.risk:
        m.risk = opts.risk
    busy_until = [0.0] * opts.agents
    ringing = []            # (placed, answers at or None, ends at)
    waiting = []            # answer times of callers not yet with an agent
    talk = live = abandoned = 0
    t = 0.0
    while t < 1.0 * 60:     # one hour of 60 talk times
        t += opts.look
        still = []
        for placed, answers, ends in ringing:
            if answers is not None and answers <= t:
                m.attempt(answers, answered=True, answer_delay=answers - placed)
                waiting.append(answers)
            elif answers is None and ends <= t:
                m.attempt(ends, answered=False)
            else:
                still.append((placed, answers, ends))
        ringing = still
        waiting.sort()
        for gone in [a for a in waiting if t - a > AGENT_WAIT]:     # hung up: abandoned
            waiting.remove(gone)
            live, abandoned = live + 1, abandoned + 1
            if not opts.fixed:
                m.record(t, live=True, abandoned=True)
        for i, until in enumerate(busy_until):
            if waiting and until <= t:
                answered = waiting.pop(0)
                start = max(answered, until)
                live += 1
                if not opts.fixed:
                    m.record(start, live=True, abandoned=False)
                busy_until[i] = start + 1.0
                talk += 1
        view = ap.QueueView(opts.agents, sum(1 for u in busy_until if u <= t),
                            tuple(sorted(u for u in busy_until if u > t)))
        calls = [ap.Ringing(t - placed, m) for placed, answers, _ in ringing if answers is None or answers > t]
        n, _ = ap.room(spec, view, m, ringing=calls, waiting=len(waiting), now=t)
        for _ in range(n):
            if rng.random() < opts.answer_rate:
                ringing.append((t, t + rng.choice(ANSWER_AFTER), None))
            else:
                ringing.append((t, None, t + NO_ANSWER_AFTER))
    return talk / (60.0 * opts.agents), abandoned / max(1, live)


def main():
    ap_ = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap_.add_argument("--hours", type=int, default=60, help="independent one-hour runs (default 60)")
    ap_.add_argument("--agents", type=int, default=20)
    ap_.add_argument("--answer-rate", type=float, default=0.3)
    ap_.add_argument("--look", type=float, default=0.0125, help="talk times between looks (default 0.0125: 0.75 s)")
    ap_.add_argument("--risk", type=float, default=0.0, help="start the threshold here instead of START_RISK")
    ap_.add_argument("--fixed", action="store_true", help="keep the threshold fixed (no adaptation)")
    ap_.add_argument("--jobs", type=int, default=2)
    opts = ap_.parse_args()
    with multiprocessing.Pool(opts.jobs) as pool:
        hours = pool.map(one_hour, [(seed, opts) for seed in range(opts.hours)])
    occ = sorted(h[0] for h in hours)
    ab = sorted(h[1] for h in hours)

    def pct(values, q):
        return 100 * values[min(len(values) - 1, int(q * len(values)))]
    print("%d hours, %d agents, %.0f%% answer rate:" % (opts.hours, opts.agents, 100 * opts.answer_rate))
    print("  occupancy  lowest %.1f%%  10th pct %.1f%%  median %.1f%%" % (pct(occ, 0), pct(occ, 0.1), pct(occ, 0.5)))
    print("  abandoned  median %.2f%%  90th pct %.2f%%  highest %.2f%%" % (pct(ab, 0.5), pct(ab, 0.9), pct(ab, 1.0)))


if __name__ == "__main__":
    main()
