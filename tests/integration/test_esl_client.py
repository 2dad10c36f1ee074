"""EslClient against misbehaving peers: every wait bounded, the hub never frozen."""
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(r'''
    import sys, time, gevent, gevent.server
    from cti_dialer.esl import EslClient, EslError

    MODE = sys.argv[1]

    def read_command(f):
        lines = []
        while True:
            line = f.readline()
            if not line:
                return None
            if line == b"\n":
                return b"".join(lines)
            lines.append(line)

    def handle(sock, addr):
        f = sock.makefile("rb")
        if MODE == "rude":
            sock.sendall(b"Content-Type: text/rude-rejection\nContent-Length: 22\n\nAccess Denied, go away.\n")
            sock.close()
            return
        if MODE == "no-greeting":
            gevent.sleep(30)
            return
        sock.sendall(b"Content-Type: auth/request\n\n")
        read_command(f); sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
        read_command(f); sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")
        read_command(f)
        if MODE == "truncated":
            sock.sendall(b"Content-Type: api/response\nContent-Length: 100\n\nfal")
            sock.close()
        elif MODE == "silent":
            gevent.sleep(30)

    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    ticks = []
    gevent.spawn(lambda: [(ticks.append(1), gevent.sleep(0.05)) for _ in iter(int, 1)])
    client = EslClient("127.0.0.1", server.server_port, "pw", connect_timeout=1, command_timeout=1)
    client.start()
    started = time.monotonic()
    if MODE in ("rude", "no-greeting"):
        connected = client.ready.wait(2.5)
        print("connected", connected, "ticks", len(ticks) > 20)
    else:
        client.ready.wait(3)
        try:
            client.api("api status")
            print("answered")
        except EslError as exc:
            print("EslError", exc)
        elapsed = time.monotonic() - started
        before = len(ticks)
        gevent.sleep(0.5)
        print("elapsed", round(elapsed, 1), "ticks", len(ticks) > before + 3)
    client.stop()
''')


def run(mode):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_peer_closing_inside_a_response_body_does_not_freeze():
    out = run("truncated")
    assert "EslError" in out and "ticks True" in out


def test_silent_peer_times_out_and_drops():
    out = run("silent")
    assert "EslError command timed out" in out
    assert "elapsed 1." in out and "ticks True" in out


def test_rude_rejection_and_missing_greeting_never_connect():
    for mode in ("rude", "no-greeting"):
        out = run(mode)
        assert "connected False" in out and "ticks True" in out, (mode, out)
