"""``cti-dialer api``: the WSGI app on gevent's server, with systemd's notify protocol and a clean stop."""
import logging
import signal
import socket

import gevent
import gevent.event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from ..sdnotify import Notifier
from .app import create_app

log = logging.getLogger("cti_dialer.api")


class Server(WSGIServer):
    def handle(self, sock, address):
        # pywsgi sends the status and headers, then the body, in two writes; with Nagle on, the body waits
        # for the client's delayed ACK of the headers (40 ms on Linux) on every response.
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def serve(config) -> int:
    from ..store import connect
    # Each live result feed holds one connection while it blocks; the rest are short.
    client = connect(config, max_connections=config.api_connections + 16)
    app = create_app(config, client)
    host, _, port = config.api_listen.rpartition(":")
    host = host.strip("[]")
    access = logging.getLogger("cti_dialer.api.access") if log.isEnabledFor(logging.DEBUG) else None
    server = Server((host, int(port)), app, spawn=Pool(config.api_connections), log=access,
                        error_log=logging.getLogger("cti_dialer.api.server"))
    server.start()
    where = "http://%s:%d" % (host if ":" not in host else "[%s]" % host, server.server_port)
    if not config.api_tokens:
        log.warning("[api] tokens is empty: every request but /healthz gets 401")
    log.info("listening on %s (%d token(s), %d read-only)", where, len(config.api_tokens),
             sum(1 for _, ro in config.api_tokens if ro))
    notifier = Notifier()
    notifier.ready("serving on %s" % where)
    if notifier.watchdog_interval:
        def keepalive():
            while True:
                notifier.watchdog()
                gevent.sleep(notifier.watchdog_interval)
        gevent.spawn(keepalive)
    stop = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)
    stop.wait()
    log.info("stopping")
    notifier.stopping()
    # Live feeds never end on their own; give short requests a moment, then close.
    server.stop(timeout=3)
    client.close()
    return 0
