"""Random outcome mixes and the answering-machine variables an answered call can carry."""
import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome, OutcomeMix
from cti_dialer.fsim.outcome import outcome_from_dict

from tests.conftest import wait_for
from tests.fsim.esl_client import EslTestClient
from tests.fsim.test_calls import client  # noqa: F401  (the fixture: a client subscribed to ALL)

pytestmark = pytest.mark.fsim




def kinds_of_a_run(seed, calls=40):
    sim = FreeSwitchSimulator()
    sim.default_outcome = OutcomeMix([(3, Outcome.answer(hold_ms=0)), (5, Outcome.no_answer()),
                                      (2, Outcome.busy())], seed=seed)
    sim.start_in_thread()
    try:
        c = EslTestClient("127.0.0.1", sim.port)
        c.auth()
        for i in range(calls):
            c.bgapi("originate {origination_uuid=c-%d}sofia/gateway/gw1/1%04d &park() XML default" % (i, i))
        wait_for(lambda: len([r for r in sim.originates() if r.state == "hungup"]) == calls,
                 message="every call over")
        c.close()
        records = sorted(sim.originates(), key=lambda r: int(r.uuid[2:]))
        return [r.outcome_kind for r in records]
    finally:
        sim.stop_thread()


def test_a_mix_draws_the_same_outcomes_from_the_same_seed():
    first = kinds_of_a_run(seed=11)
    assert first == kinds_of_a_run(seed=11)
    assert set(first) == {"answer", "no_answer", "busy"}
    assert first != kinds_of_a_run(seed=12)


def test_a_mix_follows_its_weights():
    mix = OutcomeMix([(1, Outcome.busy()), (3, Outcome.answer()), (0, Outcome.reject())], seed=5)
    draws = [mix.draw().kind for _ in range(4000)]
    assert draws.count("reject") == 0
    assert 0.70 < draws.count("answer") / 4000 < 0.80


def test_a_mix_works_per_number_and_per_gateway(sim, client):
    sim.script_number("1001", OutcomeMix([(1, Outcome.busy())], seed=1))
    sim.script_gateway("gw2", OutcomeMix([(1, Outcome.reject())], seed=1))
    client.bgapi("originate {origination_uuid=n-1}sofia/gateway/gw1/1001 &park() XML default")
    client.bgapi("originate {origination_uuid=g-1}sofia/gateway/gw2/2002 &park() XML default")
    wait_for(lambda: len([r for r in sim.originates() if r.state == "hungup"]) == 2, message="both over")
    assert {r.uuid: r.cause for r in sim.originates()} == {"n-1": "USER_BUSY", "g-1": "CALL_REJECTED"}


def test_a_retried_originate_keeps_its_draw(sim, client):
    sim.default_outcome = OutcomeMix([(1, Outcome.busy()), (1, Outcome.no_answer())], seed=3)
    client.bgapi("originate {origination_uuid=r-1,originate_retries=3,originate_retry_sleep_ms=500}"
                 "sofia/gateway/gw1/1001 &park() XML default")
    wait_for(lambda: len(sim.originates()) == 3 and sim.originates()[-1].state == "hungup",
             timeout=5, message="three attempts")
    assert len({r.outcome_kind for r in sim.originates()}) == 1


@pytest.mark.parametrize("args", [
    ([],),
    ([(0, Outcome.busy())],),
    ([(-1, Outcome.busy())],),
    ([(True, Outcome.busy())],),
    ([(1, "busy")],),
    ([(1, Outcome.busy(), 3)],),
])
def test_bad_mixes_are_refused(args):
    with pytest.raises((TypeError, ValueError)):
        OutcomeMix(*args)
    with pytest.raises(ValueError):
        OutcomeMix([(1, Outcome.busy())], seed="7")


def test_mixes_from_json():
    mix = outcome_from_dict({"mix": [[1, {"kind": "busy"}], [2, {"kind": "answer", "hold_ms": 5}]],
                             "seed": 4})
    assert isinstance(mix, OutcomeMix) and mix.seed == 4
    assert [w for w, _ in mix.choices] == [1.0, 2.0]
    assert isinstance(outcome_from_dict({"kind": "busy"}), Outcome)
    for bad in ({"mix": {"kind": "busy"}}, {"mix": [[1]]}, {"mix": [[1, {"kind": "nope"}]]},
                {"mix": [[1, {"kind": "busy"}]], "colour": 1}):
        with pytest.raises(ValueError):
            outcome_from_dict(bad)


def test_scripted_mix_in_the_cli_script():
    from cti_dialer.fsim.__main__ import apply_script
    sim = FreeSwitchSimulator()
    apply_script(sim, {"default": {"mix": [[1, {"kind": "busy"}]], "seed": 2},
                       "numbers": {"1001": {"mix": [[1, {"kind": "reject"}]]}}})
    assert isinstance(sim.default_outcome, OutcomeMix)


# --- answering-machine variables ----------------------------------------------------------

def test_amd_variables_are_on_the_hangup_events_only(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=50, variables={"amd_result": "MACHINE",
                                                                "amd_cause": "INITIALSILENCE"})
    client.bgapi("originate {origination_uuid=a-1}sofia/gateway/gw1/1001 &park() XML default")
    answer = client.wait_event("CHANNEL_ANSWER").event
    create = client.wait_event("CHANNEL_CREATE").event
    assert "variable_amd_result" not in answer and "variable_amd_result" not in create
    for name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
        ev = client.wait_event(name).event
        assert ev["variable_amd_result"] == "MACHINE"
        assert ev["variable_amd_cause"] == "INITIALSILENCE"


def test_amd_variables_only_on_the_outbound_leg_of_a_loopback(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=30, variables={"avmd_detect": "TRUE"})
    client.bgapi("originate {origination_uuid=l-1}loopback/1001 &park() XML default")
    legs = {}
    while len(legs) < 2:
        ev = client.wait_event("CHANNEL_HANGUP_COMPLETE").event
        legs[ev["Unique-ID"]] = ev
    assert legs["l-1"]["variable_avmd_detect"] == "TRUE"
    (b_leg,) = [ev for u, ev in legs.items() if u != "l-1"]
    assert "variable_avmd_detect" not in b_leg


def test_variables_from_json_and_their_validation():
    o = Outcome.from_dict({"kind": "answer", "hold_ms": 10, "variables": {"amd_result": "MACHINE"}})
    assert o.variables == (("amd_result", "MACHINE"),)
    assert o == Outcome.answer(hold_ms=10, variables={"amd_result": "MACHINE"})
    hash(o)
    for bad in ({"kind": "busy", "variables": {"amd_result": "MACHINE"}},
                {"kind": "answer", "variables": ["amd_result"]},
                {"kind": "answer", "variables": {"amd result": "MACHINE"}},
                {"kind": "answer", "variables": {"amd_result": 1}},
                {"kind": "answer", "variables": {"amd_result": "MA\nCHINE"}},
                {"kind": "answer", "variables": {"": "x"}},
                {"kind": "answer", "cleared_at_answer": True, "variables": {"a": "b"}}):
        with pytest.raises(ValueError):
            Outcome.from_dict(bad)
    with pytest.raises(ValueError):
        Outcome("busy", "USER_BUSY", variables={"amd_result": "MACHINE"})
