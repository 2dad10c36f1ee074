"""Agent-aware pacing: the pacing param, the agents listing, progressive and predictive room, the risk threshold."""
import math

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
    assert (s.mode, s.queue, s.ratio, s.abandon_cap, s.abandon_window, s.agent_wait) == (
        "predictive", "sales@default", 1.0, 0.02, 1800.0, 1.0)
    assert ap.parse(None) is None


@pytest.mark.parametrize("value, reason", [
    ("fast", "pacing must be an object"), ({"mode": "blast", "queue": "q"}, "pacing.mode must be"),
    ({"mode": "progressive"}, "pacing.queue must name"), ({"mode": "progressive", "queue": "a b"}, "pacing.queue"),
    ({"mode": "progressive", "queue": "q'; x"}, "pacing.queue"),
    ({"mode": "progressive", "queue": "q", "ratio": 0}, "pacing.ratio must be a number 0.1..10.0"),
    ({"mode": "predictive", "queue": "q", "abandon_cap": 3}, "pacing.abandon_cap"),
    ({"mode": "predictive", "queue": "q", "agents": 5}, "unknown fields agents"),
    ({"mode": "predictive", "queue": "q", "max_gain": 3}, "unknown fields max_gain"),
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
    m = ap.Measures(s)
    assert ap.room(s, view, m, ringing=[ap.Ringing(0.5, m)] * ringing, waiting=waiting, now=0.0) == (room, None)


def test_nobody_logged_in_means_no_calls():
    s = ap.parse({"mode": "predictive", "queue": "q"})
    assert ap.room(s, ap.QueueView(0, 0, ()), ap.Measures(s), ringing=[], waiting=0, now=0.0) == (0, None)


def measured(answer_rate=0.25, delays=(2.0, 3.0, 4.0, 5.0, 6.0), n=200, risk=0.05):
    s = ap.parse({"mode": "predictive", "queue": "q", "agent_wait": 1.0})
    m = ap.Measures(s)
    for i in range(n):
        answered = i % int(1 / answer_rate) == 0
        m.attempt(float(i) / 100, answered=answered, answer_delay=delays[i % len(delays)] if answered else None)
    m.risk = risk
    return s, m


def fresh(m, n):
    return [ap.Ringing(0.0, m)] * n


def test_the_answer_rate_and_times_are_counted_at_the_answer():
    s, m = measured()
    assert 0.24 < m.answer_rate() < 0.27
    assert m.answer_points() == [2.0, 3.0, 4.0, 5.0, 6.0]       # five equally likely times to answer
    assert m.answered_within(4.0) == pytest.approx(0.4)          # 2 and 3 come sooner; 4 does not
    p = m.answer_rate()
    assert m.answer_chances(0.0, [math.inf]) == [pytest.approx(p)]
    # Rung 3.5 s unanswered: 3 of the 5 times are left, and fewer calls answer at all.
    assert m.answer_chances(3.5, [math.inf, 1.0]) == [pytest.approx(p * 0.6 / (1 - p * 0.4)),
                                                      pytest.approx(p * 0.2 / (1 - p * 0.4))]
    # A call that rang longer than every answered one will not be answered.
    assert m.answer_chances(6.5, [math.inf]) == [0.0]
    # Before any answer: the rate, whenever.
    assert ap.Measures(s).answer_chances(1.0, [0.5, 2.0]) == [ap.PRIOR_ANSWER_RATE] * 2


def test_the_chance_answers_coming_first_take_every_agent():
    assert ap._taken(0, 0.0, 0.0) == 1.0                       # no agent by then: certain
    assert ap._taken(2, 1.0, 0.0) == 0.0 and ap._taken(2, 2.0, 0.0) == 1.0
    assert ap._taken(1, 0.5, 0.25) == pytest.approx(0.5)       # one answer expected half the time
    assert ap._taken(3, 1.0, 0.5) < ap._taken(3, 2.0, 0.5) < ap._taken(2, 2.0, 0.5)


def test_predictive_places_calls_while_the_next_ones_risk_is_under_the_threshold():
    s, m = measured(risk=0.05)
    view = ap.QueueView(logged_in=200, free=3, busy_ends=())   # a look's most: 20 calls
    out, _ = ap.room(s, view, m, ringing=[], waiting=0, now=100.0)
    p, points = m.answer_rate(), m.answer_points()

    def risk(k):
        return sum(ap._taken(3, k * p * m.answered_within(d), k * p * m.answered_within(d) * (1 - p * m.answered_within(d)))
                   for d in points) / len(points)
    assert risk(out - 1) <= 0.05 < risk(out)
    # Over-dials (a call answers a quarter of the time), but expects fewer answers than free agents.
    assert out > 3 and out * p < 3


@pytest.mark.parametrize("change, effect", [
    ({"free": 5}, "more"), ({"busy_ends": (101.0, 101.5)}, "more"), ({"risk": 0.2}, "more"),
    ({"ringing": 4}, "fewer"), ({"waiting": 1}, "fewer"), ({"risk": 0.01}, "fewer"),
    ({"busy_ends": (500.0,)}, "same"), ({"ringing_old": 4}, "same"),
])
def test_what_moves_the_predictive_room(change, effect):
    def out(free=3, busy_ends=(), risk=0.05, ringing=0, waiting=0, ringing_old=0):
        s, m = measured(risk=risk)
        calls = fresh(m, ringing) + [ap.Ringing(6.5, m)] * ringing_old     # rung past every answer: hopeless
        return ap.room(s, ap.QueueView(200, free, busy_ends), m, ringing=calls, waiting=waiting, now=100.0)[0]
    base, moved = out(), out(**change)
    assert {"more": moved > base, "fewer": moved < base, "same": moved == base}[effect], (base, moved)


def test_another_tasks_calls_for_the_queue_count_with_their_own_answer_rate():
    s, m = measured(risk=0.05)
    _, busy_task = measured(answer_rate=0.5)
    _, quiet_task = measured(answer_rate=0.05)
    view = ap.QueueView(200, 6, ())
    alone = ap.room(s, view, m, ringing=[], waiting=0, now=0.0)[0]
    with_quiet = ap.room(s, view, m, ringing=[ap.Ringing(0.0, quiet_task)] * 6, waiting=0, now=0.0)[0]
    with_busy = ap.room(s, view, m, ringing=[ap.Ringing(0.0, busy_task)] * 6, waiting=0, now=0.0)[0]
    assert alone > with_quiet > with_busy
    # A task that has measured no answer yet: its calls may answer any moment, at its prior rate.
    _, new_task = measured(n=0)
    with_new = ap.room(s, view, m, ringing=[ap.Ringing(0.0, new_task)] * 6, waiting=0, now=0.0)[0]
    assert with_new < alone


def test_calls_ringing_never_exceed_the_ceiling_in_whole_calls():
    s = ap.parse({"mode": "predictive", "queue": "q", "agent_wait": 1.0})
    m = ap.Measures(s)
    for i in range(400):                       # answer rate about 0.86: the ceiling is 3.49 calls
        m.attempt(i / 100, answered=i % 7 != 0, answer_delay=2.0)
    m.risk = ap.MAX_RISK
    assert math.floor(ap.RING_CEILING / m.answer_rate()) == 3
    old = [ap.Ringing(50.0, m)] * 3            # rung past every answer: no risk, but they ring
    assert ap.room(s, ap.QueueView(1, 1, ()), m, ringing=old, waiting=0, now=100.0)[0] == 0


def test_predictive_dials_progressively_until_it_measured_an_answer():
    s = ap.parse({"mode": "predictive", "queue": "q"})
    m = ap.Measures(s)
    for i in range(20):
        m.attempt(float(i), answered=False)
    assert ap.room(s, ap.QueueView(10, 4, ()), m, ringing=fresh(m, 1), waiting=1, now=0.0) == (2, None)


def test_predictive_looks_again_soon_while_calls_ring_and_times_its_look_otherwise():
    s, m = measured()
    _, soon = ap.room(s, ap.QueueView(2, 0, (110.0, 120.0)), m, ringing=fresh(m, 8), waiting=0, now=100.0)
    assert soon == pytest.approx(100.0 + min(ap.MAX_LOOK, s.agent_wait / 4))
    # A quarter of a tiny agent_wait, or of none, is not a spin.
    for tiny in (0.0, 0.002):
        t = ap.parse({"mode": "predictive", "queue": "q", "agent_wait": tiny})
        m.spec = t
        assert ap.room(t, ap.QueueView(2, 0, ()), m, ringing=fresh(m, 1), waiting=0, now=100.0)[1] == \
            pytest.approx(100.0 + ap.MIN_LOOK)
    # Nothing ringing, nobody free: the next change is the first busy agent
    # coming into reach of the latest answer time plus agent_wait (6 + 1 s).
    room, later = ap.room(s, ap.QueueView(2, 0, (110.0, 120.0)), m, ringing=[], waiting=0, now=100.0)
    assert room == 0 and later == pytest.approx(110.0 - 7.0)


def test_the_risk_threshold_settles_where_abandons_are_the_target_share():
    s = ap.parse({"mode": "predictive", "queue": "q", "abandon_cap": 0.03})
    m = ap.Measures(s)
    for i in range(100):
        m.record(i / 100, live=True, abandoned=False)
    start = m.risk
    m.record(1.0, live=True, abandoned=False)
    up = math.log(m.risk / start)
    m.record(2.0, live=True, abandoned=True)
    down = math.log(m.risk / start) - up
    target = ap.TARGET_SHARE * 0.03
    assert up == pytest.approx(ap.STEP * target / (1 - target)) and down == pytest.approx(-ap.STEP)
    # Near the cap in the window (CUT_FROM of it): each abandon also cuts by OVER_CAP_CUT.
    m.record(2.5, live=True, abandoned=True)
    assert m.abandon_rate(2.5)[0] < ap.CUT_FROM * 0.03
    before = m.risk
    m.record(3.0, live=True, abandoned=True)
    assert ap.CUT_FROM * 0.03 <= m.abandon_rate(3.0)[0] < 0.03
    assert m.risk == pytest.approx(before * math.exp(-ap.STEP) * ap.OVER_CAP_CUT)


def test_the_risk_threshold_stays_within_its_bounds():
    s = ap.parse({"mode": "predictive", "queue": "q"})
    m = ap.Measures(s)
    for i in range(100000):
        m.record(float(i), live=True)
    assert m.risk == ap.MAX_RISK
    for i in range(500):
        m.record(200000.0 + i, live=True, abandoned=True)
    assert m.risk == ap.MIN_RISK


def test_progressive_tasks_keep_no_threshold():
    s = spec()
    m = ap.Measures(s)
    m.record(1.0, live=True, abandoned=True)
    assert m.risk == ap.START_RISK and m.abandon_rate(1.0) == (1.0, 1)


def test_old_results_leave_the_window():
    s = ap.parse({"mode": "predictive", "queue": "q", "abandon_window": 60})
    m = ap.Measures(s)
    m.record(0.0, live=True, abandoned=True)
    assert m.abandon_rate(30.0) == (1.0, 1)
    assert m.abandon_rate(61.0) == (0.0, 0)
