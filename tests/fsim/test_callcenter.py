"""The mod_callcenter stand-in: its API output, its events, and what its agents do."""
import json

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome
from cti_dialer.fsim.callcenter import AGENT_COLUMNS, MEMBER_COLUMNS

from tests.conftest import wait_for
from tests.fsim.esl_client import EslTestClient

pytestmark = pytest.mark.fsim

QUEUE = "sales@default"
CC = "callcenter_config "


@pytest.fixture
def client(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    assert c.auth().reply_text == "+OK accepted"
    # Names after CUSTOM are subclasses, so the plain event names go first.
    assert c.subscribe("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB",
                       "CUSTOM", "callcenter::info").reply_text == "+OK event listener enabled plain"
    yield c
    c.close()


def originate(client, uuid, number="13800138000", exten="8888"):
    return client.bgapi("originate {origination_uuid=%s}sofia/gateway/gw1/%s %s XML default"
                        % (uuid, number, exten))


def label(frame):
    ev = frame.event
    if ev.get("Event-Name") == "CUSTOM":
        return ev.get("CC-Action")
    return ev.get("Event-Name")


def events_until(client, last, timeout=5):
    """Every CUSTOM and channel event up to and including the one ``last`` matches."""
    out = list(client.drain_events())
    while not out or not last(out[-1]):
        out.append(client.wait_event(lambda f: True, timeout=timeout))
    return [f for f in out if f.event_name != "BACKGROUND_JOB"]


def hangup_complete_of(uuid):
    return lambda f: f.event_name == "CHANNEL_HANGUP_COMPLETE" and f.event["Unique-ID"] == uuid


def cc_rows(text):
    lines = text.split("\n")
    assert lines[-2:] == ["+OK", ""], text
    return [line.split("|") for line in lines[:-2]]


# --- callcenter_config --------------------------------------------------------------

def test_api_lists_counts_and_status(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE)
    sim.callcenter.add_agent("1002", QUEUE, status="Logged Out")

    rows = cc_rows(client.api(CC + "queue list agents " + QUEUE))
    assert rows[0] == AGENT_COLUMNS.split("|")
    assert [(r[0], r[1], r[3], r[5], r[6]) for r in rows[1:]] == [
        ("1001", "single_box", "callback", "Available", "Waiting"),
        ("1002", "single_box", "callback", "Logged Out", "Waiting")]
    assert all(len(r) == 21 for r in rows)
    # No rows, no header: the module prints the column names with the first row.
    assert client.api(CC + "queue list members " + QUEUE) == "+OK\n"
    assert client.api(CC + "queue list agents " + QUEUE + " 'On Break'") == "+OK\n"
    assert client.api(CC + "queue count agents " + QUEUE) == "2\n"
    assert client.api(CC + "queue count agents " + QUEUE + " Available") == "1\n"
    assert client.api(CC + "queue count members " + QUEUE) == "0\n"
    assert client.api(CC + "queue count") == "1\n"

    assert client.api(CC + "agent set status 1001 'On Break'") == "+OK\n"
    assert client.api(CC + "agent get status 1001") == "On Break"
    change = client.wait_event(lambda f: f.event.get("CC-Action") == "agent-status-change")
    assert change.event["Event-Subclass"] == "callcenter::info"
    assert (change.event["CC-Agent"], change.event["CC-Agent-Status"]) == ("1001", "On Break")
    assert client.api(CC + "queue count agents " + QUEUE + " 'On Break'") == "1\n"
    assert client.api(CC + "agent get state 1001") == "Waiting"

    assert client.api(CC + "agent set status 1001 Sleeping") == "-ERR Invalid Agent Status!\n"
    assert client.api(CC + "agent set status nobody Available") == "-ERR Agent not found!\n"
    assert client.api(CC + "agent get status nobody") == "-ERR Agent not found!\n"
    assert client.api(CC + "agent set colour 1001 red") == "-ERR Invalid Agent Update KEY!\n"
    assert client.api(CC + "queue") == "-ERR Invalid!\n"
    assert client.api("callcenter_config").startswith("-USAGE: \ncallcenter_config <target> <args>,\n")
    tiers = cc_rows(client.api(CC + "queue list tiers " + QUEUE))
    assert tiers == [["queue", "agent", "state", "level", "position"],
                     [QUEUE, "1001", "Ready", "1", "1"], [QUEUE, "1002", "Ready", "1", "1"]]


def test_scripting_validates_its_input(sim):
    cc = sim.callcenter
    cc.add_queue(QUEUE, "8888")
    with pytest.raises(ValueError):
        cc.add_queue(QUEUE, "9999")
    with pytest.raises(ValueError):
        cc.add_queue("other", "8888")
    with pytest.raises(ValueError):
        cc.add_queue("bad name", "7777")
    with pytest.raises(ValueError):
        cc.add_agent("1001", "no-such-queue")
    with pytest.raises(ValueError):
        cc.add_agent("1001", QUEUE, status="available")
    with pytest.raises(ValueError):
        cc.add_agent("1001", QUEUE, talk_ms=-1)
    cc.add_agent("1001", QUEUE)
    with pytest.raises(ValueError):
        cc.set_status("1001", "Busy")
    with pytest.raises(ValueError):
        cc.set_status("nobody", "Available")


# --- calls through the queue ----------------------------------------------------------

def test_bridged_call_events_in_the_modules_order(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE, talk_ms=150)
    # The queue, not the outcome's hold time, ends a call that joined it.
    sim.default_outcome = Outcome.answer(hold_ms=10)
    originate(client, "m-1")
    # While the agent talks, the member's row says so.
    rows = wait_for(lambda: [r for r in cc_rows(client.api(CC + "queue list members " + QUEUE))[1:]
                             if r[-1] == "Answered"], message="an answered member")
    assert rows[0][3] == "m-1" and rows[0][13] == "1001"
    assert client.api(CC + "agent get uuid 1001") != ""
    frames = events_until(client, hangup_complete_of("m-1"))
    assert [label(f) for f in frames] == [
        "member-queue-start", "members-count", "agent-state-change", "agent-offering",
        "bridge-agent-start", "members-count", "agent-state-change",
        "CHANNEL_HANGUP", "bridge-agent-end", "member-queue-end", "agent-state-change",
        "CHANNEL_HANGUP_COMPLETE"]
    ev = {}
    for f in frames:
        ev.setdefault(label(f), f.event)     # the first of each
    start = frames[0].event
    assert start["Event-Subclass"] == "callcenter::info"
    assert start["CC-Queue"] == QUEUE
    assert start["CC-Member-Session-UUID"] == "m-1" and start["Unique-ID"] == "m-1"
    assert start["CC-Member-CID-Number"] == "13800138000"
    member_uuid = start["CC-Member-UUID"]
    assert member_uuid != "m-1"
    assert [f.event["CC-Count"] for f in frames if label(f) == "members-count"] == ["1", "0"]
    assert [f.event["CC-Agent-State"] for f in frames if label(f) == "agent-state-change"] == [
        "Receiving", "In a queue call", "Waiting"]
    bridge = ev["bridge-agent-start"]
    assert (bridge["CC-Agent"], bridge["CC-Member-UUID"], bridge["CC-Member-Session-UUID"]) == (
        "1001", member_uuid, "m-1")
    end = ev["member-queue-end"]
    assert (end["CC-Cause"], end["CC-Agent"], end["Unique-ID"]) == ("Terminated", "1001", "m-1")
    assert int(end["CC-Member-Leaving-Time"]) >= int(end["CC-Member-Joined-Time"])
    done = frames[-1].event
    assert done["Hangup-Cause"] == "NORMAL_CLEARING"
    assert done["variable_sip_term_status"] == "200"      # the far end's BYE
    assert done["variable_cc_queue"] == QUEUE and done["variable_cc_agent"] == "1001"
    assert int(done["variable_billmsec"]) >= 130            # the agent's talk time, not hold_ms
    assert client.api(CC + "queue list members " + QUEUE) == "+OK\n"
    stats = sim.callcenter.stats(QUEUE)
    assert (stats["offered"], stats["bridged"], stats["abandoned"], stats["waiting"]) == (1, 1, 0, 0)


def test_abandoned_call_leaves_with_cancel_break_out(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888", patience_ms=80)
    sim.callcenter.add_agent("1001", QUEUE, status="On Break")
    originate(client, "m-1")
    frames = events_until(client, hangup_complete_of("m-1"))
    assert [label(f) for f in frames] == [
        "member-queue-start", "members-count", "CHANNEL_HANGUP", "member-queue-end", "members-count",
        "CHANNEL_HANGUP_COMPLETE"]
    end = frames[3].event
    assert (end["CC-Cause"], end["CC-Cancel-Reason"]) == ("Cancel", "BREAK_OUT")
    assert end["CC-Member-Session-UUID"] == "m-1" and "CC-Agent" not in end
    assert [f.event["CC-Count"] for f in frames if label(f) == "members-count"] == ["1", "0"]
    assert frames[-1].event["variable_cc_cancel_reason"] == "BREAK_OUT"
    # The module keeps an abandoned member's row for a while, its session gone.
    rows = cc_rows(client.api(CC + "queue list members " + QUEUE))
    assert rows[0] == MEMBER_COLUMNS.split("|")
    assert (rows[1][3], rows[1][15]) == ("", "Abandoned")
    assert client.api(CC + "queue count members " + QUEUE) == "1\n"
    stats = sim.callcenter.stats(QUEUE)
    assert (stats["offered"], stats["bridged"], stats["abandoned"]) == (1, 0, 1)
    assert stats["abandon_rate"] == 1.0
    assert [m["result"] for m in stats["members"]] == ["abandoned"]
    assert stats["members"][0]["wait_ms"] >= 60


def test_the_dialer_hanging_up_a_waiting_member_is_an_abandon(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE, status="Logged Out")
    originate(client, "m-1")
    client.wait_event(lambda f: f.event.get("CC-Action") == "member-queue-start")
    assert client.api("uuid_kill m-1") == "+OK\n"
    end = client.wait_event(lambda f: f.event.get("CC-Action") == "member-queue-end")
    assert (end.event["CC-Cause"], end.event["CC-Cancel-Reason"]) == ("Cancel", "BREAK_OUT")
    assert sim.callcenter.stats(QUEUE)["abandoned"] == 1


def test_wrap_up_keeps_the_agent_from_the_next_call(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE, talk_ms=60, wrap_up_ms=400)
    originate(client, "m-1")
    originate(client, "m-2", number="13800138001")
    frames = events_until(client, hangup_complete_of("m-2"))
    # Back to Waiting at once, as the module does; the wrap-up only delays the next offer.
    states = [(f.event["CC-Agent-State"]) for f in frames if label(f) == "agent-state-change"]
    assert states == ["Receiving", "In a queue call", "Waiting"] * 2
    stats = sim.callcenter.stats(QUEUE)
    first, second = sorted(stats["members"], key=lambda m: m["joined"])
    assert first["result"] == second["result"] == "bridged"
    assert second["wait_ms"] >= 60 + 400 - 40
    agent = stats["agents"]["1001"]
    assert agent["calls"] == 2
    assert agent["busy_ms"] == pytest.approx(agent["talk_ms"] + agent["wrap_up_ms"])
    assert agent["wrap_up_ms"] >= 400


def test_a_logged_out_agent_gets_no_call_until_it_logs_in(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE, status="Logged Out", talk_ms=50)
    originate(client, "m-1")
    client.wait_event(lambda f: f.event.get("CC-Action") == "member-queue-start")
    wait_for(lambda: sim.callcenter.stats(QUEUE)["waiting"] == 1, message="a waiting member")
    rows = cc_rows(client.api(CC + "queue list members " + QUEUE))
    assert rows[1][15] == "Waiting" and rows[1][13] == ""
    assert sim.callcenter.stats(QUEUE)["bridged"] == 0
    # Logging in over ESL, as an agent application does.
    assert client.api(CC + "agent set status 1001 Available") == "+OK\n"
    start = client.wait_event(lambda f: f.event.get("CC-Action") == "bridge-agent-start")
    assert start.event["CC-Agent"] == "1001"
    events_until(client, hangup_complete_of("m-1"))
    # Logged out again: the next caller waits out its call.
    sim.callcenter.set_status("1001", "Logged Out")
    sim.callcenter.add_queue("other", "9999", patience_ms=50)
    originate(client, "m-2", exten="9999")
    frames = events_until(client, hangup_complete_of("m-2"))
    assert "bridge-agent-start" not in [label(f) for f in frames]


def test_on_demand_agent_goes_idle_after_a_call(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE, status="Available (On Demand)", talk_ms=30)
    originate(client, "m-1")
    frames = events_until(client, hangup_complete_of("m-1"))
    assert [f.event["CC-Agent-State"] for f in frames if label(f) == "agent-state-change"][-1] == "Idle"
    assert client.api(CC + "agent get state 1001") == "Idle"


def test_agents_are_offered_calls_longest_idle_first(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    for name in ("a", "b", "c"):
        sim.callcenter.add_agent(name, QUEUE, talk_ms=20)
    taken = []
    for i in range(5):
        originate(client, "m-%d" % i, number="1380013800%d" % i)
        frames = events_until(client, hangup_complete_of("m-%d" % i))
        taken += [f.event["CC-Agent"] for f in frames if label(f) == "bridge-agent-start"]
    assert taken == ["a", "b", "c", "a", "b"]


def test_stats_give_occupancy_and_abandon_rate(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888", patience_ms=150)
    sim.callcenter.add_agent("1001", QUEUE, talk_ms=100)
    sim.callcenter.add_agent("1002", QUEUE, talk_ms=100)
    for i in range(6):
        originate(client, "m-%d" % i, number="1390000000%d" % i)
    wait_for(lambda: sum(1 for uuid in sim.active_channels()) == 0 and len(sim.originates()) == 6,
             message="every call over")
    stats = sim.callcenter.stats(QUEUE)
    assert stats["offered"] == 6
    assert stats["bridged"] + stats["abandoned"] == 6
    assert stats["bridged"] >= 2 and stats["abandoned"] >= 2
    assert stats["max_waiting"] >= 4 and stats["waiting"] == 0
    talk = sum(a["talk_ms"] for a in stats["agents"].values())
    available = sum(a["available_ms"] for a in stats["agents"].values())
    assert talk == pytest.approx(stats["talk_ms"]) and available == pytest.approx(stats["available_ms"])
    assert 0 < talk / available <= 1 and stats["occupancy"] == pytest.approx(talk / available, rel=0.2)
    assert stats["abandon_rate"] == stats["abandoned"] / stats["offered"]
    assert len([m for m in stats["members"] if m["result"] == "bridged"]) == stats["bridged"]
    assert any("member-queue-start" in text for _, text in stats["events"])


def test_a_call_to_another_extension_is_not_queued(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE)
    sim.default_outcome = Outcome.answer(hold_ms=20)
    originate(client, "m-1", exten="&park()")
    originate(client, "m-2", exten="7777")
    events_until(client, hangup_complete_of("m-2"))
    wait_for(lambda: not sim.active_channels(), message="both calls over")
    assert sim.callcenter.stats(QUEUE)["offered"] == 0


# --- subscriptions -----------------------------------------------------------------------

def test_custom_subclass_subscriptions(sim):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE)
    clients = {}
    for key, words in (("all", ("ALL",)), ("subclass", ("CUSTOM", "callcenter::info")),
                       ("custom", ("CUSTOM",)), ("other", ("CUSTOM", "sofia::register"))):
        c = EslTestClient("127.0.0.1", sim.port)
        c.auth()
        assert c.subscribe(*words).reply_text == "+OK event listener enabled plain"
        clients[key] = c
    try:
        sim.callcenter.set_status("1001", "On Break")
        for key in ("all", "subclass"):
            f = clients[key].wait_event("CUSTOM")
            assert f.event["CC-Action"] == "agent-status-change"
        for key in ("custom", "other"):
            # A round trip: anything fired before the reply would be queued by now.
            assert clients[key].api("uuid_exists x") == "false"
            assert clients[key].drain_events() == []
        nix = clients["subclass"].command("nixevent CUSTOM callcenter::info")
        assert nix.reply_text == "+OK events nixed"
        sim.callcenter.set_status("1001", "Available")
        assert clients["all"].wait_event("CUSTOM").event["CC-Agent-Status"] == "Available"
        assert clients["subclass"].api("uuid_exists x") == "false"
        assert clients["subclass"].drain_events() == []
    finally:
        for c in clients.values():
            c.close()


def test_json_events_carry_the_same_headers(sim):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE)
    c = EslTestClient("127.0.0.1", sim.port)
    try:
        c.auth()
        assert c.command("event json CUSTOM callcenter::info").reply_text == "+OK event listener enabled json"
        sim.callcenter.set_status("1001", "Logged Out")
        frame = c.read_frame(5)
        body = json.loads(frame.body)
        assert body["Event-Name"] == "CUSTOM" and body["Event-Subclass"] == "callcenter::info"
        assert body["CC-Agent-Status"] == "Logged Out"
    finally:
        c.close()


def test_a_restart_forgets_members_but_keeps_agents(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE, talk_ms=5000)
    originate(client, "m-1")
    client.wait_event(lambda f: f.event.get("CC-Action") == "bridge-agent-start")
    sim.restart()
    c = EslTestClient("127.0.0.1", sim.port)
    try:
        c.auth()
        assert c.api(CC + "queue list members " + QUEUE) == "+OK\n"
        assert c.api(CC + "agent get state 1001") == "Waiting"
    finally:
        c.close()


def test_scheduled_status_changes(sim, client):
    sim.callcenter.add_queue(QUEUE, "8888")
    sim.callcenter.add_agent("1001", QUEUE, status="Logged Out")
    sim.callcenter.schedule_status(30, "1001", "Available")
    f = client.wait_event(lambda f: f.event.get("CC-Action") == "agent-status-change")
    assert f.event["CC-Agent-Status"] == "Available"


def test_script_before_start_arms_the_timeline():
    from cti_dialer.fsim.__main__ import apply_script
    sim = FreeSwitchSimulator()
    apply_script(sim, {"callcenter": {
        "queues": [{"name": QUEUE, "extension": "8888", "patience_ms": 100}],
        "agents": [{"name": "agent-{n}", "count": 3, "queue": QUEUE, "status": "Logged Out",
                    "talk_ms": 50, "wrap_up_ms": 10}],
        "timeline": [{"at_ms": 20, "agent": "agent-2", "status": "Available"}]}})
    sim.start_in_thread()
    try:
        wait_for(lambda: sim.callcenter.stats(QUEUE)["agents"]["agent-2"]["status"] == "Available",
                 message="the scheduled log-in")
        assert sorted(sim.callcenter.stats(QUEUE)["agents"]) == ["agent-1", "agent-2", "agent-3"]
    finally:
        sim.stop_thread()


@pytest.mark.parametrize("bad", [
    {"callcenter": {"queues": [{"name": QUEUE, "extension": "8888", "colour": "red"}]}},
    {"callcenter": {"agents": [{"name": "a", "queue": QUEUE}]}},
    {"callcenter": {"queues": [{"name": QUEUE, "extension": "8888"}],
                    "agents": [{"name": "a", "count": 2, "queue": QUEUE}]}},
    {"callcenter": {"lanes": []}},
    {"callcenter": []},
])
def test_bad_callcenter_scripts_are_refused(bad):
    from cti_dialer.fsim.__main__ import apply_script
    with pytest.raises(ValueError):
        apply_script(FreeSwitchSimulator(), bad)
