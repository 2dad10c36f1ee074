"""Prometheus metrics, computed at scrape time from the daemon's own state.

Counters and gauges are read from what the daemon keeps anyway (per-task
stats, tracked calls, connection state), so the hot path pays nothing for
them; only the originate latency histogram is observed per call.
"""
import collections
import logging
import time

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("cti_dialer.metrics")

# From the write of bgapi originate to its BACKGROUND_JOB (+OK on answer or
# early media, -ERR on failure): ring time included, so the buckets go long.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class DaemonCollector:
    def __init__(self, daemon):
        self.daemon = daemon

    def collect(self):
        d = self.daemon
        calls = d.tracker
        started = CounterMetricFamily("cti_dialer_calls_started", "Originates written to FreeSWITCH.", labels=["task"])
        answered = CounterMetricFamily("cti_dialer_calls_answered", "Attempts answered.", labels=["task"])
        failed = CounterMetricFamily("cti_dialer_calls_failed", "Attempts not answered, by cause.",
                                     labels=["task", "cause"])
        for owner, stats in list(calls.stats.items()):
            started.add_metric([owner], stats.get("dialed", 0))
            answered.add_metric([owner], stats.get("answered", 0))
            for key, value in stats.items():
                if key.startswith("cause:"):
                    failed.add_metric([owner, key[6:]], value)
        machine = CounterMetricFamily("cti_dialer_calls_machine", "Attempts answered by an answering machine.",
                                      labels=["task"])
        for owner, stats in list(calls.stats.items()):
            if stats.get("machine"):
                machine.add_metric([owner], stats["machine"])
        yield started
        yield answered
        yield failed
        yield machine
        yield from _pacing_metrics(d)
        active = GaugeMetricFamily("cti_dialer_active_calls", "Calls followed now, per task.", labels=["task"])
        for owner, count in list(calls.active.items()):
            active.add_metric([owner], count)
        yield active
        per_line = collections.Counter(c.line for c in list(calls.claims.values()) if c.line)
        line_gauge = GaugeMetricFamily("cti_dialer_line_active_calls", "Calls of this host per line.",
                                       labels=["line"])
        for line in set(d.catalog.lines) | set(per_line):
            line_gauge.add_metric([line], per_line.get(line, 0))
        yield line_gauge
        health = d.housekeeping.line_health
        out = GaugeMetricFamily("cti_dialer_line_out_of_service", "1 while a line is out of service after "
                                "fault_threshold consecutive failures (all hosts; as of the last heartbeat).",
                                labels=["line"])
        failures = GaugeMetricFamily("cti_dialer_line_consecutive_failures", "Consecutive failed calls of a "
                                     "line with fault detection (all hosts).", labels=["line"])
        for line in sorted(name for name, item in d.catalog.lines.items() if item.fault_threshold):
            out.add_metric([line], int("out" in health.get(line, {})))
            failures.add_metric([line], health.get(line, {}).get("failures", 0))
        yield out
        yield failures
        queue = GaugeMetricFamily("cti_dialer_queue_length", "Numbers waiting in a task's queue (as of the last "
                                  "status refresh).", labels=["task"])
        for name, length in list(d.housekeeping.queue_lengths.items()):
            queue.add_metric([name], length)
        yield queue
        yield GaugeMetricFamily("cti_dialer_redis_up", "1 while Redis is reachable.", value=int(d.health.redis_ok.is_set()))
        yield GaugeMetricFamily("cti_dialer_esl_up", "1 while logged in to FreeSWITCH.", value=int(d.esl.ready.is_set()))
        yield GaugeMetricFamily("cti_dialer_switch_refusing", "1 while FreeSWITCH refuses originates outright "
                                "(-ERR without a hangup cause, e.g. an event-socket ACL).",
                                value=int(bool(d.health.switch_fault)))
        yield CounterMetricFamily("cti_dialer_redis_connects", "Redis (re)connections.", value=d.health.redis_connects)
        yield CounterMetricFamily("cti_dialer_esl_connects", "FreeSWITCH event socket (re)connections.",
                                  value=d.esl.reconnects)
        yield GaugeMetricFamily("cti_dialer_pending_writes", "Results waiting to be written to Redis.",
                                value=len(d.writer))


def _pacing_metrics(d):
    """Paced tasks: abandoned calls, the abandon rate over their window, free agents and the risk threshold."""
    pacer = getattr(d, "pacer", None)
    paced = [t for t in d.catalog.tasks.values() if t.pacing is not None] if pacer is not None else []
    abandoned = CounterMetricFamily("cti_dialer_calls_abandoned", "Live answers of paced tasks not with an "
                                    "agent within agent_wait (this host).", labels=["task"])
    rate = GaugeMetricFamily("cti_dialer_abandon_rate", "Abandoned / live answers over the task's "
                             "abandon_window (this host).", labels=["task"])
    free = GaugeMetricFamily("cti_dialer_agents_free", "Free agents of the paced task's mod_callcenter queue.",
                             labels=["task"])
    risk = GaugeMetricFamily("cti_dialer_pacing_risk", "The abandon risk a predictive task's next call may "
                             "carry (the threshold its controller adapts).", labels=["task"])
    now = time.time()
    for task in paced:
        report = pacer.report(task, now)
        abandoned.add_metric([task.name], report["abandoned"])
        rate.add_metric([task.name], report["abandon_rate"])
        free.add_metric([task.name], report["agents_free"])
        risk.add_metric([task.name], report["pacing_risk"])
    yield abandoned
    yield rate
    yield free
    yield risk


def make_registry(daemon):
    registry = CollectorRegistry()
    registry.register(DaemonCollector(daemon))
    latency = Histogram("cti_dialer_originate_latency_seconds", "bgapi originate to its BACKGROUND_JOB.",
                        buckets=LATENCY_BUCKETS, registry=registry)
    return registry, latency


def serve(registry, listen):
    """Serve /metrics on ``host:port`` with gevent's WSGI server; returns the server."""
    from gevent.pywsgi import WSGIServer
    from prometheus_client import make_wsgi_app
    host, _, port = listen.rpartition(":")
    server = WSGIServer((host or "127.0.0.1", int(port)), make_wsgi_app(registry), log=None, error_log=log)
    server.start()
    log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", server.server_port)
    return server
