"""A graceful stop as captured (05_shutdown_disconnect): SHUTDOWN, hangups, grace, notice, gone."""
import socket
import time

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome
from cti_dialer.fsim.wire import SHUTDOWN_NOTICE

from tests.conftest import wait_for as wait_until  # noqa: E402
from tests.fsim.esl_client import EslTestClient

pytestmark = pytest.mark.fsim

# The captured SHUTDOWN event's headers, in order, and its one value of its own.
SHUTDOWN_HEADERS = ["Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname",
                    "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT",
                    "Event-Date-Timestamp", "Event-Calling-File", "Event-Calling-Function",
                    "Event-Calling-Line-Number", "Event-Sequence", "Event-Info"]


def connect(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    assert c.auth().reply_text == "+OK accepted"
    return c


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def quick_sim():
    s = FreeSwitchSimulator(shutdown_grace_ms=300)
    s.start_in_thread()
    yield s
    s.stop_thread()


def test_shutdown_as_captured(quick_sim):
    sim = quick_sim
    sim.default_outcome = Outcome.answer(hold_ms=None)
    watcher = connect(sim)
    watcher.subscribe("CHANNEL_HANGUP_COMPLETE", "SHUTDOWN", "BACKGROUND_JOB", "CHANNEL_CREATE")
    for i in range(3):
        watcher.api("originate {origination_uuid=up%d}null/%d 8888 XML default" % (i, i))
    core = watcher.api("status")
    started = time.monotonic()
    sim.shutdown()

    shutdown = watcher.wait_event("SHUTDOWN")
    assert list(shutdown.event) == SHUTDOWN_HEADERS and shutdown.event_body == ""
    assert shutdown.event["Event-Info"] == "System Shutting Down"
    assert (shutdown.event["Event-Calling-File"], shutdown.event["Event-Calling-Function"],
            shutdown.event["Event-Calling-Line-Number"]) == ("switch_core.c", "switch_core_destroy", "3033")
    for i in range(3):
        hangup = watcher.wait_event("CHANNEL_HANGUP_COMPLETE").event
        assert hangup["Hangup-Cause"] == "SYSTEM_SHUTDOWN" and hangup["variable_hangup_cause_q850"] == "16"
    assert sim.active_channels() == {}

    # Originates are still taken, and never answered: no channel, no job result.
    late = connect(sim)
    job = late.bgapi("originate {origination_uuid=late}null/9 8888 XML default")
    late.send_raw(b"api originate {origination_uuid=late2}null/9 &park()\n\n")

    rest = watcher.read_until_closed()
    assert time.monotonic() - started >= 0.28
    assert rest.endswith(SHUTDOWN_NOTICE)
    assert b"CHANNEL_CREATE" not in rest and job.encode() not in rest
    assert late.read_until_closed() == SHUTDOWN_NOTICE     # the api originate got no reply either
    assert [(r.uuid, r.outcome_kind) for r in sim.originates()][-2:] == [("late", "shutdown"), ("late2", "shutdown")]
    assert sim.is_down() and refused(sim.port)

    # A restart comes back empty, on the same port.
    sim.restart()
    assert not sim.is_down()
    again = connect(sim)
    status = again.api("status")
    assert "0 session(s) since startup" in status and status != core
    assert again.api("uuid_exists up0") == "false"
    assert again.api("originate {origination_uuid=back}null/1 &park()") == "+OK back\n"
    for c in (watcher, late, again):
        c.close()


@pytest.mark.parametrize("command", ["api shutdown", "api fsctl shutdown", "api fsctl shutdown elegant"])
def test_shutdown_over_the_event_socket(quick_sim, command):
    c = connect(quick_sim)
    c.subscribe("SHUTDOWN")
    reply = c.command(command)
    assert reply.text == "+OK\n"
    assert c.wait_event("SHUTDOWN").event_name == "SHUTDOWN"
    assert c.read_until_closed() == SHUTDOWN_NOTICE
    wait_until(quick_sim.is_down)


def test_fsctl_shutdown_cancel_does_nothing(quick_sim):
    c = connect(quick_sim)
    assert c.api("fsctl shutdown cancel") == "+OK\n"
    time.sleep(0.4)
    assert c.api("uuid_exists x") == "false" and not quick_sim.is_down()
    c.close()


def test_stop_during_the_grace_period():
    s = FreeSwitchSimulator(shutdown_grace_ms=5000)
    s.start_in_thread()
    c = connect(s)
    s.shutdown()
    started = time.monotonic()
    s.stop_thread()
    assert time.monotonic() - started < 3
    c.read_until_closed()
