"""Agent-aware pacing: the pacing param, the agents listing, progressive and predictive room, the gain."""
import pytest

from cti_dialer import agent_pacing as ap

pytestmark = pytest.mark.unit

LISTING = """name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|reject_delay_time|busy_delay_time|no_answer_delay_time|last_bridge_start|last_bridge_end|last_offered_call|last_status_change|no_answer_count|calls_answered|talk_time|ready_time|external_calls_count
a1|single_box||callback|user/1001|Available|Waiting|3|5|10|60|0|900|950|900|100|0|3|150|0|0
a2|single_box||callback|user/1002|Available|In a queue call|3|5|10|60|0|990|950|990|100|0|3|150|0|0
a3|single_box||callback|user/1003|On Break|Waiting|3|5|10|60|0|0|0|0|100|0|0|0|0|0
a4|single_box||callback|user/1004|Available|Waiting|3|30|10|60|0|960|990|960|100|0|1|30|0|0
+OK
"""


def spec(**kw):
    return ap.parse({"mode": "progressive", "queue": "sales@default", **kw})


def test_parse_defaults_and_fields():
    s = ap.parse({"mode": "predictive", "queue": "sales@default", "abandon_cap": 0.02, "agent_wait": 1})
    assert (s.mode, s.queue, s.ratio, s.abandon_cap, s.abandon_window, s.agent_wait, s.max_gain) == (
        "predictive", "sales@default", 1.0, 0.02, 1800.0, 1.0, 3.0)
    assert ap.parse(None) is None


@pytest.mark.parametrize("value, reason", [
    ("fast", "pacing must be an object"), ({"mode": "blast", "queue": "q"}, "pacing.mode must be"),
    ({"mode": "progressive"}, "pacing.queue must name"), ({"mode": "progressive", "queue": "a b"}, "pacing.queue"),
    ({"mode": "progressive", "queue": "q'; x"}, "pacing.queue"),
    ({"mode": "progressive", "queue": "q", "ratio": 0}, "pacing.ratio must be a number 0.1..10.0"),
    ({"mode": "predictive", "queue": "q", "abandon_cap": 3}, "pacing.abandon_cap"),
    ({"mode": "predictive", "queue": "q", "agents": 5}, "unknown fields agents"),
])
def test_parse_errors(value, reason):
    with pytest.raises(ap.PacingError) as info:
        ap.parse(value)
    assert reason in str(info.value)


def test_the_agent_listing_and_who_is_free():
    agents = {a.name: a for a in ap.parse_agent_list(LISTING)}
    assert sorted(agents) == ["a1", "a2", "a3", "a4"]
    assert agents["a1"].free(1000.0)                # idle, wrap-up (5 s after 950) long over
    assert not agents["a2"].free(1000.0) and agents["a2"].busy()
    assert not agents["a3"].free(1000.0)            # on break
    assert not agents["a4"].free(1000.0) and agents["a4"].free(1020.0)   # in its 30 s wrap-up until 1020
    v = ap.view(agents, mean_talk=60.0, now=1000.0)
    assert (v.logged_in, v.free, v.busy_ends) == (3, 1, (990 + 60 + 5,))


def test_a_listing_the_switch_refused_has_no_agents():
    assert ap.parse_agent_list("-ERR Invalid queue\n") == []


@pytest.mark.parametrize("free, ratio, ringing, waiting, room", [
    (10, 1.0, 0, 0, 10), (10, 1.0, 4, 3, 3), (10, 1.0, 12, 0, 0), (4, 1.5, 2, 0, 4), (0, 2.0, 0, 0, 0),
])
def test_progressive_keeps_calls_without_an_agent_under_free_agents_times_ratio(free, ratio, ringing, waiting, room):
    view = ap.QueueView(logged_in=10, free=free, busy_ends=())
    s = spec(ratio=ratio)
    assert ap.room(s, view, ap.Measures(s), rang=[0.5] * ringing, waiting=waiting, now=0.0) == (room, None)


def test_nobody_logged_in_means_no_calls():
    s = ap.parse({"mode": "predictive", "queue": "q"})
    assert ap.room(s, ap.QueueView(0, 0, ()), ap.Measures(s), rang=[], waiting=0, now=0.0) == (0, None)


def measured(answer_rate=0.25, delays=(2.0, 3.0, 4.0, 5.0, 6.0), n=200):
    s = ap.parse({"mode": "predictive", "queue": "q", "agent_wait": 1.0})
    m = ap.Measures(s)
    for i in range(n):
        answered = i % int(1 / answer_rate) == 0
        m.attempt(float(i) / 100, answered=answered, answer_delay=delays[i % len(delays)] if answered else None)
    return s, m


def test_the_answer_rate_and_times_are_counted_at_the_answer():
    s, m = measured()
    assert 0.24 < m.answer_rate() < 0.27
    assert m.early_answer() == 2.0
    # A call that rang longer than every answered one will not be answered.
    assert m.answer_chance(0.0) == pytest.approx(m.answer_rate())
    assert 0 < m.answer_chance(3.5) < m.answer_chance(0.0)
    assert m.answer_chance(6.5) == 0.0


def test_predictive_dials_for_agents_free_by_the_time_a_call_could_be_answered():
    s, m = measured()
    m.gain = 1.0
    # Reach: the early answer (2 s) plus agent_wait (1 s). 2 free now, one busy
    # agent ending within 3 s and one later, one answered call waiting.
    view = ap.QueueView(logged_in=4, free=2, busy_ends=(102.5, 300.0))
    p = m.answer_rate()
    pending = m.answer_chance(0.0) + m.answer_chance(6.5)        # one fresh call ringing, one hopeless
    expected = min(int((2 + 1 - 1 - pending) / p), 1)           # one call per look with 4 agents
    room, next_look = ap.room(s, view, m, rang=[0.0, 6.5], waiting=1, now=100.0)
    assert room == expected == 1
    assert next_look == pytest.approx(100.0 + ap.IDLE_AGENT_LOOK)   # an agent is idle: look again soon


def test_predictive_times_its_next_look_to_the_next_agent_coming_into_reach():
    s, m = measured()
    view = ap.QueueView(logged_in=2, free=0, busy_ends=(110.0, 120.0))
    room, next_look = ap.room(s, view, m, rang=[0.0] * 8, waiting=0, now=100.0)
    assert room == 0 and next_look == pytest.approx(110.0 - 3.0)


def test_the_gain_settles_where_abandons_are_the_target_share():
    s = ap.parse({"mode": "predictive", "queue": "q", "abandon_cap": 0.03})
    m = ap.Measures(s)
    start = m.gain
    m.record(1.0, live=True, abandoned=False)
    up = m.gain - start
    m.record(2.0, live=True, abandoned=True)
    down = m.gain - (start + up)
    target = ap.TARGET_SHARE * 0.03
    assert up == pytest.approx(ap.STEP * target / (1 - target)) and down < 0
    # Over the cap in the window: each abandon also cuts by OVER_CAP_CUT.
    before = m.gain
    m.record(3.0, live=True, abandoned=True)
    assert m.gain == pytest.approx((before - ap.STEP) * ap.OVER_CAP_CUT)
    assert m.abandon_rate(3.0) == (pytest.approx(2 / 3), 3)


def test_the_gain_stays_within_its_bounds():
    s = ap.parse({"mode": "predictive", "queue": "q", "max_gain": 1.5})
    m = ap.Measures(s)
    for i in range(10000):
        m.record(float(i), live=True)
    assert m.gain == 1.5
    for i in range(200):
        m.record(20000.0 + i, live=True, abandoned=True)
    assert m.gain == ap.MIN_GAIN


def test_progressive_tasks_keep_no_gain():
    s = spec()
    m = ap.Measures(s)
    m.record(1.0, live=True, abandoned=True)
    assert m.gain == ap.START_GAIN and m.abandon_rate(1.0) == (1.0, 1)


def test_old_results_leave_the_window():
    s = ap.parse({"mode": "predictive", "queue": "q", "abandon_window": 60})
    m = ap.Measures(s)
    m.record(0.0, live=True, abandoned=True)
    assert m.abandon_rate(30.0) == (1.0, 1)
    assert m.abandon_rate(61.0) == (0.0, 0)
