"""The simulator as seen by greenswitch's InboundESL, the client the daemon builds on."""
import gevent
import gevent.event
import pytest
from greenswitch import esl

from cti_dialer.fsim import FreeSwitchSimulator, Outcome

pytestmark = pytest.mark.fsim


def close(conn):
    """Stop a client without waiting for greenswitch's one-second queue poll."""
    conn._run = False
    conn._esl_event_queue.put(esl.ESLEvent(""))
    try:
        conn.stop()
    except Exception:
        pass


class Collector:
    def __init__(self, conn, *names):
        self.events = []
        self.changed = gevent.event.Event()
        for name in names:
            conn.register_handle(name, self.on_event)

    def on_event(self, event):
        self.events.append(event)
        self.changed.set()

    def wait(self, pred, timeout=5.0):
        with gevent.Timeout(timeout, AssertionError("event not seen within %ss" % timeout)):
            while True:
                for event in self.events:
                    if pred(event):
                        return event
                self.changed.clear()
                self.changed.wait()


def test_connect_api_and_bgapi(sim):
    sim.default_outcome = Outcome.answer(hold_ms=0)
    conn = esl.InboundESL("127.0.0.1", sim.port, "ClueCon", timeout=5)
    conn.connect()
    try:
        assert conn.send("api status").data.startswith("UP ")
        seen = Collector(conn, "BACKGROUND_JOB", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE")
        reply = conn.send("event plain BACKGROUND_JOB CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE")
        assert reply.data == "+OK event listener enabled plain"
        reply = conn.send("bgapi originate {origination_uuid=gs-1}sofia/gateway/gw1/100 &park()\n"
                          "Job-UUID: gs-job-1")
        assert reply.data == "+OK Job-UUID: gs-job-1"
        job = seen.wait(lambda e: e.headers.get("Event-Name") == "BACKGROUND_JOB")
        assert job.headers["Job-UUID"] == "gs-job-1"
        answer = seen.wait(lambda e: e.headers.get("Event-Name") == "CHANNEL_ANSWER")
        assert answer.headers["Unique-ID"] == "gs-1"
        hangup = seen.wait(lambda e: e.headers.get("Event-Name") == "CHANNEL_HANGUP_COMPLETE")
        assert hangup.headers["Hangup-Cause"] == "NORMAL_CLEARING"
        assert hangup.headers["variable_billsec"] == "0"
    finally:
        close(conn)


def test_api_originate_and_failures(sim):
    sim.script_number("200", Outcome.busy(ring_ms=10))
    sim.script_gateway("down", Outcome.fail("GATEWAY_DOWN"))
    conn = esl.InboundESL("127.0.0.1", sim.port, "ClueCon", timeout=5)
    conn.connect()
    try:
        assert conn.send("api originate {origination_uuid=g2}sofia/gateway/gw/100 &park()").data == "+OK g2\n"
        assert conn.send("api originate sofia/gateway/gw/200 &park()").data == "-ERR USER_BUSY\n"
        assert conn.send("api originate sofia/gateway/down/300 &park()").data == "-ERR GATEWAY_DOWN\n"
        assert conn.send("api uuid_exists g2").data == "false"
    finally:
        close(conn)
    assert [r.outcome_kind for r in sim.originates()] == ["answer", "busy", "fail"]


def test_wrong_password_is_refused(sim):
    conn = esl.InboundESL("127.0.0.1", sim.port, "not-it", timeout=5)
    with pytest.raises(ValueError):
        conn.connect()
    close(conn)


def test_exit_on_stop(sim):
    conn = esl.InboundESL("127.0.0.1", sim.port, "ClueCon", timeout=5)
    conn.connect()
    close(conn)
    assert [r.raw for r in sim.commands()] == ["auth ****", "exit"]


def test_same_hub_mode_with_greenswitch():
    """start()/stop() inside the caller's own gevent hub, no thread involved."""
    s = FreeSwitchSimulator()
    s.start()
    try:
        conn = esl.InboundESL("127.0.0.1", s.port, "ClueCon", timeout=5)
        conn.connect()
        seen = Collector(conn, "CHANNEL_HANGUP_COMPLETE")
        conn.send("event plain CHANNEL_HANGUP_COMPLETE")
        s.default_outcome = Outcome.reject(ring_ms=5)
        assert conn.send("bgapi originate sofia/gateway/gw/1 &park()").data.startswith("+OK Job-UUID: ")
        event = seen.wait(lambda e: True)
        assert event.headers["Hangup-Cause"] == "CALL_REJECTED"
        s.drop_connections()
        with gevent.Timeout(5):
            while conn.connected:
                gevent.sleep(0.01)
        assert s.connections() == 0
        close(conn)
    finally:
        s.stop()
