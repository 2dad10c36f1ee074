"""Session throttles as the captured switch applies them (04_throttle_null / 04_throttle_burst).

What the captures show, with the switch's sessions-per-second set to 4:
- the core counts session requests per one-second window of its 20 ms
  ticks, refused ones included, and refuses the request that brings the
  count to ``sps``: a window admits sps - 1;
- six originates in one tick: three get a channel, three answer
  ``-ERR DESTINATION_OUT_OF_ORDER`` with no channel at all;
- originates 200 ms apart: five pass, the sixth (one second after the
  first) is refused, because a window edge fell between the second and the
  third; windows start where the timer thread started, not on the second;
- a ``loopback/`` originate asks for two sessions: when only the first is
  granted, that A leg stays up with no job result until the originate
  timeout, then NO_ANSWER.
"""
import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome

from tests.conftest import wait_for as wait_until  # noqa: E402
from tests.fsim.capture import capture_path, event_headers, read_items
from tests.fsim.esl_client import EslTestClient

pytestmark = pytest.mark.fsim

REFUSED = "-ERR DESTINATION_OUT_OF_ORDER\n"
TICK = 0.020


@pytest.fixture
def client(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    assert c.auth().reply_text == "+OK accepted"
    c.subscribe("BACKGROUND_JOB", "CHANNEL_CREATE", "CHANNEL_HANGUP_COMPLETE")
    yield c
    c.close()


def burst(client, dial, n, prefix="b", extra=""):
    client.send_raw("".join("bgapi originate {origination_uuid=%s%d%s}%s 8800 XML default\nJob-UUID: %s%d\n\n"
                            % (prefix, i, extra, dial, prefix, i) for i in range(n)))
    assert [client.reply().reply_text for _ in range(n)] == ["+OK Job-UUID: %s%d" % (prefix, i) for i in range(n)]


def at_window_start(sim, wall_clock, offset_ticks=1):
    """Put the switch's time a few ticks into one of its throttle windows."""
    clock = sim._switch.clock
    stamp = 1796027461 * 1_000_000
    stamp -= (stamp - clock.window_phase_us) % 1_000_000
    wall_clock.now = (stamp + clock.lag_us) / 1e6 + offset_ticks * TICK + 0.001
    return wall_clock.now


def test_a_window_admits_sps_minus_one_and_refuses_without_a_channel(sim, client, wall_clock):
    sim.sps = 4
    at_window_start(sim, wall_clock)
    burst(client, "null/1000", 6)
    results = [client.wait_job("b%d" % i).event_body for i in range(6)]
    assert results == ["+OK b0\n", "+OK b1\n", "+OK b2\n", REFUSED, REFUSED, REFUSED]
    wait_until(lambda: sim.active_channels() == {})
    client.api("uuid_exists sync")
    created = [f.event["Unique-ID"] for f in client.drain_events() if f.event_name == "CHANNEL_CREATE"]
    assert created == ["b0", "b1", "b2"]
    assert [r.outcome_kind for r in sim.originates()][3:] == ["throttled"] * 3
    # The rest of the window stays shut, the next one opens.
    wall_clock.now += 1.0 - 3 * TICK
    assert client.api("originate {origination_uuid=late}null/1 &park()") == REFUSED
    wall_clock.now += 2 * TICK
    assert client.api("originate {origination_uuid=next}null/1 &park()") == "+OK next\n"


def test_windows_follow_the_switch_ticks_as_captured(sim, client, wall_clock):
    """04_throttle_null: originates 200 ms apart, 5 pass and the 6th is refused."""
    sim.sps = 4
    start = at_window_start(sim, wall_clock, offset_ticks=50 - 15)   # the edge falls 300 ms on
    items = [i for i in read_items(capture_path("04_throttle_null.txt")) if i.kind == "sent"]
    originates = [i.command for i in items if i.command.startswith("bgapi originate")]
    assert len(originates) == 6
    results = []
    for n, command in enumerate(originates):
        wall_clock.now = start + 0.2 * n
        job = command.split("Job-UUID: ")[1]
        client.send_raw(command + "\n\n")
        client.reply()
        results.append(client.wait_job(job).event_body)
    assert results[:5] == ["+OK %s\n" % c.split("Job-UUID: ")[1] for c in originates[:5]]
    assert results[5] == REFUSED


def test_burst_of_two_leg_originates_as_captured(sim, client, wall_clock):
    """04_throttle_burst, second burst: six loopback originates, sps 4."""
    sim.sps = 4
    sim.script_number("9000", Outcome.cleared())     # the captured 9000 answers and hangs up at once
    at_window_start(sim, wall_clock)
    burst(client, "loopback/9000", 6, prefix="l", extra=",originate_timeout=1")
    first = client.wait_job("l0").event_body
    assert first == "-ERR NORMAL_CLEARING\n"
    assert [client.wait_job("l%d" % i).event_body for i in range(2, 6)] == [REFUSED] * 4
    # The second got its A leg but never its B leg: no result until the timeout.
    assert sim.active_channels().keys() == {"l1"}
    lone = [f for f in client.events if f.event_name == "CHANNEL_CREATE" and f.event["Unique-ID"] == "l1"]
    assert lone and lone[0].event["Channel-State-Number"] == "1"
    assert "variable_loopback_leg" not in lone[0].event
    assert client.wait_job("l1", timeout=3).event_body == "-ERR NO_ANSWER\n"
    names = [f.event_name for f in client.drain_events()]
    assert names.count("CHANNEL_CREATE") == 3        # l0 both legs, l1 one
    # Header names of the three CHANNEL_CREATE events are the captured ones.
    real = [i.frame for i in read_items(capture_path("04_throttle_burst.txt"))
            if i.kind == "frame" and i.frame.event_name == "CHANNEL_CREATE"
            and i.frame.event["Channel-Name"].startswith("loopback/")]
    ours = [f for f in lone_and_pair(sim, client)]
    assert [[n for n, _ in event_headers(f)] for f in ours] == [[n for n, _ in event_headers(f)] for f in real]


def lone_and_pair(sim, client):
    """The CREATE events of a fresh two-leg call and of a lone A leg, for the header comparison."""
    sim.sps = None
    sim.script_number("9001", Outcome.answer(ring_ms=50))
    sim.script_number("9002", Outcome.stalled())
    client.api("originate {origination_uuid=p0}loopback/9001 8800 XML default")
    client.bgapi("originate {origination_uuid=p1}loopback/9002 8800 XML default")
    wait_until(lambda: "p1" in sim.active_channels())
    client.api("uuid_exists sync")
    creates = [f for f in client.drain_events() if f.event_name == "CHANNEL_CREATE"]
    assert len(creates) == 3
    client.api("uuid_kill p1")
    return creates


def test_max_sessions_refusal(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    sim.max_sessions = 3
    assert client.api("originate {origination_uuid=m1}loopback/1 &park()") == "+OK m1\n"   # two sessions
    assert client.api("originate {origination_uuid=m2}null/2 &park()") == "+OK m2\n"
    assert client.api("originate {origination_uuid=m3}null/3 &park()") == REFUSED
    assert client.api("uuid_exists m3") == "false"
    assert [r.outcome_kind for r in sim.originates()] == ["answer", "answer", "throttled"]


def test_status_reports_the_throttles(sim, client, wall_clock):
    status = client.api("status").split("\n")
    assert status[4].startswith("0 session(s) per Sec out of max 2000, peak 0, last 5min 0")
    assert status[5] == "4000 session(s) max"
    assert client.api("fsctl sps 4") == "+OK sessions per second: 4\n"
    assert client.api("fsctl max_sessions 50") == "+OK max sessions: 50\n"
    assert (sim.sps, sim.max_sessions) == (4, 50)
    at_window_start(sim, wall_clock)
    burst(client, "null/1", 5)
    [client.wait_job("b%d" % i) for i in range(5)]
    wall_clock.now += 1.0
    status = client.api("status").split("\n")
    # The last whole window's requests, refused ones too, as the core counts them.
    assert status[4] == "5 session(s) per Sec out of max 4, peak 5, last 5min 5 "
    assert status[5] == "50 session(s) max"
    assert status[2] == "3 session(s) since startup"
    assert client.api("fsctl last_sps") == "+OK last sessions per second: 5\n"
    assert client.api("fsctl nonsense").startswith("-ERR INVALID COMMAND\nUSAGE: fsctl [recover|")
    assert client.api("fsctl").startswith("-USAGE: [recover|")


def test_status_uptime_words(sim, client):
    sim._switch.started_at -= 61
    assert client.api("status").startswith("UP 0 years, 0 days, 0 hours, 1 minute, 1 second, ")


def test_a_new_simulator_is_not_throttled():
    assert FreeSwitchSimulator().sps is None and FreeSwitchSimulator().max_sessions is None


def test_window_edges_fall_where_the_switch_started_not_on_the_second(sim, client, wall_clock):
    sim.sps = 2                                          # one session a window: a probe finds the edges
    second = 1796027461.0 + sim._switch.clock.lag_us / 1e6     # the switch reads a whole second here
    wall_clock.now = second + 0.0001
    admitted = []
    for _ in range(2 * 50 + 1):
        if client.api("originate null/1 &park()").startswith("+OK"):
            admitted.append(round(wall_clock.now - second, 4))
        wall_clock.now += TICK
    assert len(admitted) == 3 and admitted[2] - admitted[1] == pytest.approx(1.0)
    # The first window was entered mid-way; its edges are whole seconds of the switch's ticks apart,
    # and (for this seed) not on the wall clock's seconds.
    assert admitted[0] == 0.0001 and TICK + 0.001 < admitted[1] < 1
