"""``python -m cti_dialer.fsim`` as a separate process."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome
from cti_dialer.fsim.__main__ import apply_script
from cti_dialer.fsim.wire import SHUTDOWN_NOTICE

from tests.fsim.esl_client import EslTestClient

pytestmark = pytest.mark.fsim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "cti_dialer.fsim", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running(*args):
    """The simulator process and the port it listens on; killed if the test leaves it running."""
    proc = spawn(*args)
    try:
        line = proc.stdout.readline()
        assert line.startswith("fsim listening on "), line + proc.stderr.read()
        yield proc, int(line.strip().rsplit(":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_cli_runs_the_script_and_stops_on_sigterm(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({
        "default": {"kind": "answer", "ring_ms": 0, "hold_ms": 1000},
        "gateways": {"gw2": {"kind": "fail", "cause": "GATEWAY_DOWN"}},
        "numbers": {"1001": {"kind": "busy"}},
        "sps": None, "max_sessions": 5,
    }))
    with running("--host", "127.0.0.1", "--port", "0", "--password", "pw", "--script", str(script),
                 "--gateways", "gw1,gw2") as (proc, port):
        c = EslTestClient("127.0.0.1", port)
        assert c.auth("pw").reply_text == "+OK accepted"
        assert c.api("originate sofia/gateway/gw1/1001 &park()") == "-ERR USER_BUSY\n"
        assert c.api("originate sofia/gateway/gw2/1002 &park()") == "-ERR GATEWAY_DOWN\n"
        assert c.api("originate sofia/gateway/gw3/1002 &park()") == "-ERR INVALID_GATEWAY\n"
        assert c.api("originate {origination_uuid=cli}sofia/gateway/gw1/1003 &park()") == "+OK cli\n"
        # Unthrottled, status reports what the captured switch was set to.
        assert "out of max 2000" in c.api("status") and "5 session(s) max" in c.api("status")
        c.close()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5


def test_cli_process_ends_on_api_shutdown():
    with running("--port", "0", "--seed", "3", "--shutdown-grace-ms", "100") as (proc, port):
        c = EslTestClient("127.0.0.1", port)
        assert c.auth().reply_text == "+OK accepted"
        assert c.api("shutdown") == "+OK\n"
        assert c.read_until_closed() == SHUTDOWN_NOTICE
        assert proc.wait(timeout=10) == 0


def test_cli_rejects_a_bad_script(tmp_path):
    script = tmp_path / "bad.json"
    script.write_text(json.dumps({"default": {"kind": "teleport"}}))
    proc = spawn("--port", "0", "--script", str(script))
    try:
        assert proc.wait(timeout=20) == 2
        assert "teleport" in proc.stderr.read()
    finally:
        proc.stdout.close()
        proc.stderr.close()


def test_apply_script():
    sim = FreeSwitchSimulator()
    apply_script(sim, {"default": {"kind": "no_answer", "ring_ms": 5},
                       "numbers": {"1": {"kind": "reject"}}, "sps": 10})
    assert sim.default_outcome == Outcome.no_answer(ring_ms=5)
    assert sim.sps == 10 and sim.max_sessions is None
    with pytest.raises(ValueError):
        apply_script(sim, {"sps": -1})
    with pytest.raises(ValueError):
        apply_script(sim, {"surprise": 1})


MONKEY_PATCHED = r'''
from gevent import monkey
monkey.patch_all()
import sys
from greenswitch import esl
from cti_dialer.fsim import FreeSwitchSimulator, Outcome
sim = FreeSwitchSimulator(gateways="gw1")
sim.start_in_thread()
sim.default_outcome = Outcome.answer(hold_ms=None)
conn = esl.InboundESL("127.0.0.1", sim.port, "ClueCon", timeout=5)
conn.connect()
print(conn.send("api originate {origination_uuid=mp}sofia/gateway/gw1/1 &park()").data.strip())
print(sorted(sim.active_channels()))
print(sim.hangup_all())
sim.stop_thread()
print("stopped")
'''


def test_start_in_thread_in_a_monkey_patched_process():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", MONKEY_PATCHED], cwd=ROOT, env=env, timeout=60,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["+OK mp", "['mp']", "1", "stopped", ""]
