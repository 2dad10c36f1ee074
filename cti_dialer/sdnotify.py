"""systemd's notify protocol: one datagram per message to $NOTIFY_SOCKET.

Ten lines of socket code; the PyPI clients for this are unmaintained, and
python-systemd needs libsystemd headers to build.
"""
import os
import socket


class Notifier:
    def __init__(self, address=None):
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if self.address.startswith("@"):
            self.address = "\0" + self.address[1:]         # abstract namespace
        self._sock = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        usec = os.environ.get("WATCHDOG_USEC", "")
        # Keep-alives twice per watchdog period, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None

    def __bool__(self):
        return self._sock is not None

    def send(self, *fields):
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8", "replace"), self.address)
        except OSError:
            pass    # systemd gone or socket full: never worth failing the daemon for

    def ready(self, status=None):
        self.send("READY=1", *(["STATUS=" + status] if status else []))

    def status(self, text):
        self.send("STATUS=" + text.replace("\n", " "))

    def watchdog(self):
        self.send("WATCHDOG=1")

    def reloading(self):
        self.send("RELOADING=1")

    def stopping(self):
        self.send("STOPPING=1")
