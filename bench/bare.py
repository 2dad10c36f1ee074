"""The bare ceiling: a minimal gevent + greenswitch loop keeping N originates in flight.

Run: python bench/bare.py --port PORT --inflight 200 --seconds 10
Prints one line: "bare: <calls> calls in <s> s = <rate> calls/s".

Each of N greenlets sends ``bgapi originate`` with its own Job-UUID and
origination_uuid, waits for that call's CHANNEL_HANGUP_COMPLETE (after the
BACKGROUND_JOB), and starts the next one: what any dialer must do at least.
"""
import argparse
import sys
import time
import uuid

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from greenswitch import esl  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    conn = esl.InboundESL(args.host, args.port, args.password)
    conn.connect()
    conn.send("event plain BACKGROUND_JOB CHANNEL_HANGUP_COMPLETE")
    waiting = {}

    def on_hangup(event):
        done = waiting.pop(event.headers.get("Unique-ID"), None)
        if done is not None:
            done.set()

    conn.register_handle("CHANNEL_HANGUP_COMPLETE", on_hangup)
    conn.register_handle("BACKGROUND_JOB", lambda event: None)
    count = [0]
    deadline = time.time() + args.seconds

    def worker(i):
        while time.time() < deadline:
            call = str(uuid.uuid4())
            done = gevent.event.Event()
            waiting[call] = done
            conn.send("bgapi originate {origination_uuid=%s}sofia/gateway/gw1/%d 8888 XML default\nJob-UUID: %s"
                      % (call, 10_000_000 + i, call))
            if done.wait(30):
                count[0] += 1

    started = time.time()
    gevent.joinall([gevent.spawn(worker, i) for i in range(args.inflight)])
    elapsed = time.time() - started
    print("bare: %d calls in %.1f s = %.0f calls/s" % (count[0], elapsed, count[0] / elapsed))
    sys.stdout.flush()
    conn._run = False


if __name__ == "__main__":
    main()
