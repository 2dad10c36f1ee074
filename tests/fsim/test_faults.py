"""Injected faults, the command log and the life cycle."""
import socket
import time

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome
from cti_dialer.fsim.wire import DISCONNECT_NOTICE

from tests.conftest import wait_for as wait_until  # noqa: E402
from tests.fsim.esl_client import EslTestClient

pytestmark = pytest.mark.fsim


def connect(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    assert c.auth().reply_text == "+OK accepted"
    return c


def test_drop_connections_with_notice_keeps_channels(sim):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    a, b = connect(sim), connect(sim)
    assert a.api("originate {origination_uuid=keep}sofia/gateway/gw/1 &park()") == "+OK keep\n"
    assert sim.connections() == 2
    sim.drop_connections()
    assert a.read_until_closed() == DISCONNECT_NOTICE
    assert b.read_until_closed() == DISCONNECT_NOTICE
    wait_until(lambda: sim.connections() == 0)
    assert list(sim.active_channels()) == ["keep"]
    c = connect(sim)
    assert c.api("uuid_exists keep") == "true"
    for x in (a, b, c):
        x.close()


def test_drop_connections_without_notice(sim):
    c = connect(sim)
    sim.drop_connections(notice=False)
    assert c.read_until_closed() == b""


def test_drop_while_an_api_originate_is_waiting(sim):
    sim.default_outcome = Outcome.answer(ring_ms=60000)
    c = connect(sim)
    c.send_raw(b"api originate {origination_uuid=w}sofia/gateway/gw/1 &park()\n\n")
    wait_until(lambda: sim.active_channels())
    sim.drop_connections()
    assert c.read_until_closed() == DISCONNECT_NOTICE
    assert "w" in sim.active_channels()


def test_silent_loses_replies_and_events_until_resumed(sim):
    c = connect(sim)
    c.subscribe("ALL")
    sim.silent = True
    c.send_raw(b"api originate {origination_uuid=quiet}sofia/gateway/gw/1 &park()\n\napi status\n\n")
    wait_until(lambda: len(sim.commands()) == 4)          # still read and executed
    wait_until(lambda: sim.originates()[0].state == "hungup")
    with pytest.raises(socket.timeout):
        c.read_frame(timeout=0.3)
    sim.silent = False
    assert c.api("uuid_exists quiet") == "false"          # the lost replies never show up
    assert c.drain_events() == []


def test_restart_forgets_channels_without_hangups(sim):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    watcher = connect(sim)
    watcher.subscribe("CHANNEL_HANGUP_COMPLETE")
    watcher.api("originate {origination_uuid=gone}sofia/gateway/gw/1 &park()")
    sim.restart()
    assert watcher.read_until_closed() == b""             # no hangup event, no notice
    assert sim.active_channels() == {}
    assert sim.originates()[0].state == "forgotten"
    c = connect(sim)
    assert c.api("uuid_exists gone") == "false"
    assert "0 session(s) since startup" in c.api("status")
    c.close()


def test_command_log(sim):
    bad = EslTestClient("127.0.0.1", sim.port)
    bad.send_raw(b"auth secret-guess\n\n")
    bad.read_until_closed()
    c = connect(sim)
    c.command("bgapi status\nJob-UUID: log-job")
    c.api("uuid_exists abc")
    records = sim.commands()
    assert [r.raw for r in records] == ["auth ****", "auth ****", "bgapi status\nJob-UUID: log-job",
                                        "api uuid_exists abc"]
    assert records[0].conn_id != records[1].conn_id == records[2].conn_id
    assert all(isinstance(r.ts, float) for r in records)
    assert "secret-guess" not in repr(records)
    sim.reset_log()
    assert sim.commands() == []
    c.close()


def test_stop_thread_with_clients_and_ringing_calls():
    s = FreeSwitchSimulator()
    s.start_in_thread()
    s.default_outcome = Outcome.answer(ring_ms=60000)
    c = connect(s)
    c.command("bgapi originate sofia/gateway/gw/1 &park()")
    wait_until(lambda: s.active_channels())
    started = time.monotonic()
    s.stop_thread()
    assert time.monotonic() - started < 3
    assert c.read_until_closed() == DISCONNECT_NOTICE
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=1)


def test_start_twice_is_refused(sim):
    with pytest.raises(RuntimeError):
        sim.start_in_thread()


def test_client_that_vanishes_mid_command(sim):
    raw = socket.create_connection(("127.0.0.1", sim.port))
    raw.sendall(b"auth ClueCon\n\nbgapi originate sofia/gateway/gw/1 &pa")
    raw.close()
    wait_until(lambda: sim.connections() == 0)
    c = connect(sim)
    assert c.api("uuid_exists x") == "false"
    c.close()


def test_restart_also_cancels_pending_route_failures(sim):
    sim.script_gateway("slow", Outcome.fail("GATEWAY_DOWN", ring_ms=300))
    c = connect(sim)
    c.bgapi("originate sofia/gateway/slow/1 &park()")
    sim.restart()
    c.read_until_closed()
    watcher = connect(sim)
    watcher.subscribe("BACKGROUND_JOB")
    with pytest.raises(socket.timeout):
        watcher.read_frame(timeout=0.6)
    watcher.close()
