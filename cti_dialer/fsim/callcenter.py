"""A stand-in for FreeSWITCH's mod_callcenter: queues, agents, and the calls between them.

An originated call whose extension (the originate's ``<exten>`` argument,
``originate {...}sofia/gateway/gw/123 8888 XML default`` -> ``8888``) is a
queue's extension joins that queue when it is answered, as if the dialplan
ran ``callcenter <queue>``. From then on the queue, not the outcome's
``hold_ms``, ends the call: an agent talks to it for the agent's ``talk_ms``
and then the far end hangs up (NORMAL_CLEARING), or the caller gives up
after the queue's ``patience_ms`` without an agent and hangs up.

Scripting (``sim.callcenter``; safe from any thread)::

    cc = sim.callcenter
    cc.add_queue("sales@default", "8888", patience_ms=2000)
    cc.add_agent("1001", "sales@default", status="Available", talk_ms=60000, wrap_up_ms=5000)
    cc.set_status("1001", "On Break")
    cc.schedule_status(600000, "1001", "Logged Out")     # in 10 minutes
    cc.stats("sales@default")                            # see ``CallCenter.stats``

What it does as the module does (mod_callcenter.c, FreeSWITCH 1.10):

- a member waits until an agent of its queue has status ``Available`` or
  ``Available (On Demand)`` (compared exactly, as the module's SQL does: a
  status set as ``available`` is stored and reported that way and never
  gets a call), state ``Waiting``, a tier state ``Ready``/``No Answer``, its
  wrap-up after its last call over and its ``ready_time`` reached;
- agents are offered calls longest idle first (strategy
  ``longest-idle-agent``: the least recent ``last_offered_call``, then the
  tier position, then the order they were added); members are served
  longest waiting first;
- an offered agent goes Receiving, answers at once, and is ``In a queue
  call`` until the call ends; then it goes back to ``Waiting`` at once (an
  ``Available (On Demand)`` agent to ``Idle``) and is simply not offered
  calls until its wrap-up time has passed; the module has no wrap-up state;
- a member that leaves before an agent took it is kept with state
  ``Abandoned`` for the queue's ``discard_abandoned_after`` (60 s) and is
  reported ``CC-Cause: Cancel`` / ``CC-Cancel-Reason: BREAK_OUT``, the
  reason for a caller who hangs up;
- ``callcenter_config`` answers as the module does: ``queue list agents|members|tiers
  <queue>`` (a ``|``-separated header line only when there are rows, the
  rows, then ``+OK``), ``queue count agents <queue> [status] [state]``,
  ``queue count members <queue>`` (every row of the queue, abandoned ones
  included, as its SQL counts), ``agent set status <agent> '<status>'``,
  ``agent get status|state|uuid <agent>`` (the value without a newline),
  ``agent add|del|list``, ``tier add|del|list``, ``queue list|count|load``;
- CUSTOM events with ``Event-Subclass: callcenter::info``, reached with
  ``event plain CUSTOM callcenter::info`` or ``event plain ALL``, with the
  module's ``CC-Action`` values and header names, in this order for a call
  an agent takes::

      member-queue-start, members-count, agent-state-change (Receiving),
      agent-offering, bridge-agent-start, members-count,
      agent-state-change (In a queue call), ..., CHANNEL_HANGUP,
      bridge-agent-end, member-queue-end (Terminated),
      agent-state-change (Waiting), CHANNEL_HANGUP_COMPLETE

  and for one that gives up: member-queue-start, members-count, ...,
  CHANNEL_HANGUP, member-queue-end (Cancel, BREAK_OUT), members-count,
  CHANNEL_HANGUP_COMPLETE. member-queue-start and member-queue-end carry
  the member channel's data (``Unique-ID``, ``Caller-*``, ``variable_*``)
  before the ``CC-*`` headers; the member's ``cc_*`` variables show in its
  later events and its hangup events.

Simplified: the agent answers the instant it is offered (no ringing, no
no-answer, no reject/busy delays) and has no channel of its own (no agent
leg events; ``CC-Agent-UUID`` is a made-up uuid); one strategy; members are
dispatched the moment something changes rather than on the module's
100 ms poll; times the module keeps in whole seconds (wrap-up, talk time in
the lists) are kept in milliseconds and only shown rounded down in the
``callcenter_config`` output; ``Event-Calling-Line-Number`` of these events
is not taken from a capture; no ``max-wait-time`` / ``max-wait-time-with-no-agent``
queue timeouts, no tier levels or rules, no abandoned-resume.

In a JSON script for ``python -m cti_dialer.fsim --script`` (or
``cti-dialer fsim --script``)::

    {"default": {"mix": [[30, {"kind": "answer", "hold_ms": 60000}],
                         [5,  {"kind": "answer", "variables": {"amd_result": "MACHINE"}}],
                         [65, {"kind": "no_answer", "ring_ms": 20000}]], "seed": 7},
     "callcenter": {
       "queues": [{"name": "sales@default", "extension": "8888", "patience_ms": 4000}],
       "agents": [{"name": "agent-{n}", "count": 20, "queue": "sales@default",
                   "status": "Available", "talk_ms": 60000, "wrap_up_ms": 5000}],
       "timeline": [{"at_ms": 600000, "agent": "agent-3", "status": "Logged Out"}]}}

``count`` makes agents ``name`` with ``{n}`` replaced by 1..count; a
timeline's ``at_ms`` counts from when the simulator starts listening.
"""
import time
import uuid as uuidlib
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .originate import separate_string
from .outcome import _check_ms

SUBCLASS = "callcenter::info"
SYSTEM = "single_box"

STATUSES = ("Logged Out", "Available", "Available (On Demand)", "On Break")
STATES = ("Waiting", "Receiving", "In a queue call", "Idle")
TIER_STATES = ("Unknown", "No Answer", "Ready", "Offering", "Active Inbound", "Standby")
# The dispatch query matches these literally (agents.status = 'Available' ...).
_OFFERABLE = ("Available", "Available (On Demand)")
_AGENT_TYPES = ("callback", "uuid-standby")

AGENT_COLUMNS = ("name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|"
                 "reject_delay_time|busy_delay_time|no_answer_delay_time|last_bridge_start|"
                 "last_bridge_end|last_offered_call|last_status_change|no_answer_count|calls_answered|"
                 "talk_time|ready_time|external_calls_count")
MEMBER_COLUMNS = ("queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|"
                  "rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|"
                  "serving_system|state")
TIER_COLUMNS = "queue|agent|state|level|position"
QUEUE_COLUMNS = ("name|strategy|moh_sound|time_base_score|tier_rules_apply|tier_rule_wait_second|"
                 "tier_rule_wait_multiply_level|tier_rule_no_agent_no_wait|discard_abandoned_after|"
                 "abandoned_resume_allowed|max_wait_time|max_wait_time_with_no_agent|"
                 "max_wait_time_with_no_agent_time_reached|record_template|calls_answered|calls_abandoned|"
                 "ring_progressively_delay|skip_agents_with_external_calls|agent_no_answer_status")

USAGE = ("callcenter_config <target> <args>,\n"
         "\tcallcenter_config agent add [name] [type] | \n"
         "\tcallcenter_config agent del [name] | \n"
         "\tcallcenter_config agent set status [agent_name] [status] | \n"
         "\tcallcenter_config agent set state [agent_name] [state] | \n"
         "\tcallcenter_config agent set contact [agent_name] [contact] | \n"
         "\tcallcenter_config agent set ready_time [agent_name] [wait till epoch] | \n"
         "\tcallcenter_config agent set reject_delay_time [agent_name] [wait second] | \n"
         "\tcallcenter_config agent set busy_delay_time [agent_name] [wait second] | \n"
         "\tcallcenter_config agent set no_answer_delay_time [agent_name] [wait second] | \n"
         "\tcallcenter_config agent get status [agent_name] | \n"
         "\tcallcenter_config agent get state [agent_name] | \n"
         "\tcallcenter_config agent get uuid [agent_name] | \n"
         "\tcallcenter_config agent list [[agent_name]] | \n"
         "\tcallcenter_config tier add [queue_name] [agent_name] [[level]] [[position]] | \n"
         "\tcallcenter_config tier del [queue_name] [agent_name] | \n"
         "\tcallcenter_config tier list | \n"
         "\tcallcenter_config queue load [queue_name] | \n"
         "\tcallcenter_config queue list | \n"
         "\tcallcenter_config queue list agents [queue_name] [status] [state] | \n"
         "\tcallcenter_config queue list members [queue_name] | \n"
         "\tcallcenter_config queue list tiers [queue_name] | \n"
         "\tcallcenter_config queue count | \n"
         "\tcallcenter_config queue count agents [queue_name] [status] [state] | \n"
         "\tcallcenter_config queue count members [queue_name] | \n"
         "\tcallcenter_config queue count tiers [queue_name]")

# Where each event comes from in the module (file, function); the line is a stand-in.
_CALLING = {
    "cc_agent_update": ("mod_callcenter.c", "cc_agent_update", "1068"),
    "cc_agent_get": ("mod_callcenter.c", "cc_agent_get", "1004"),
    "cc_queue_count": ("mod_callcenter.c", "cc_queue_count", "862"),
    "callcenter_function": ("mod_callcenter.c", "callcenter_function", "3178"),
    "outbound_agent_thread_run": ("mod_callcenter.c", "outbound_agent_thread_run", "2037"),
}


def _check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("%s must be a non-empty string, got %r" % (kind, value))
    # Names go into '|'-separated rows and space-separated commands.
    if any(c in "| '\"\\" or ord(c) < 0x20 for c in value):
        raise ValueError("%s must not contain blanks, quotes, '|' or control characters: %r" % (kind, value))
    return value


def _status_of(value: str) -> Optional[str]:
    """The status a value names, case-insensitively as cc_agent_str2status reads it."""
    for status in STATUSES:
        if status.lower() == value.lower():
            return status
    return None


def _state_of(value: str) -> Optional[str]:
    for state in STATES:
        if state.lower() == value.lower():
            return state
    return None


class Queue:
    def __init__(self, name: str, extension: str, patience_ms: Optional[int], discard_ms: int,
                 log_limit: Optional[int]):
        self.name = name
        self.extension = extension
        self.patience_ms = patience_ms
        self.discard_ms = discard_ms
        self.offered = 0
        self.bridged = 0
        self.abandoned = 0
        self.max_waiting = 0
        self.log: Deque[Tuple[float, str]] = deque(maxlen=log_limit)
        self.members_log: Deque[Dict[str, Any]] = deque(maxlen=log_limit)


class Tier:
    __slots__ = ("queue", "agent", "state", "level", "position")

    def __init__(self, queue: str, agent: str, level: int = 1, position: int = 1):
        self.queue = queue
        self.agent = agent
        self.state = "Ready"
        self.level = level
        self.position = position


class Agent:
    def __init__(self, name: str, order: int, status: str, talk_ms: int, wrap_up_ms: int, now: float,
                 now_s: int, agent_type: str = "callback"):
        self.name = name
        self.order = order               # insertion order: the rows' order in the module's table
        self.type = agent_type
        self.contact = "[call_timeout=60]user/%s" % name
        self.status = status
        self.state = "Waiting"
        self.talk_ms = talk_ms
        self.wrap_up_ms = wrap_up_ms
        self.uuid = ""
        self.max_no_answer = 0
        self.reject_delay_time = 0
        self.busy_delay_time = 0
        self.no_answer_delay_time = 0
        self.last_bridge_start = 0       # epoch seconds, as the module keeps them
        self.last_bridge_end = 0
        self.last_offered_us = 0         # finer than the module's seconds, to order a fast test
        self.last_status_change = now_s
        self.no_answer_count = 0
        self.calls_answered = 0
        self.talk_time_ms = 0            # reset when set Available, as the module does
        self.ready_time = 0
        self.wrapping = 0                # >0 while the wrap-up after a call runs (a token)
        self.member: Optional["Member"] = None
        # Statistics, never reset.
        self.since = now
        self.available_ms = 0.0
        self.logged_in_ms = 0.0
        self.total_talk_ms = 0.0
        self.total_wrap_ms = 0.0
        self.calls = 0
        self.bridge_started: Optional[float] = None
        self.wrap_started: Optional[float] = None

    def offerable_status(self) -> bool:
        return self.status in _OFFERABLE

    def account(self, now: float):
        """Credit the time since the last change to the status the agent had."""
        span = max(0.0, now - self.since) * 1000.0
        if self.status in _OFFERABLE:
            self.available_ms += span
        if self.status.lower() != "logged out":
            self.logged_in_ms += span
        self.since = now


class Member:
    def __init__(self, queue: Queue, ch, joined: float, joined_s: int, system_s: int):
        self.queue = queue
        self.uuid = str(uuidlib.uuid4())
        self.ch = ch
        self.session_uuid = ch.uuid
        self.cid_name = "Outbound Call"  # the originate's transfer flips the caller id
        self.cid_number = ch.rec.number
        self.dnis = ch.rec.number
        self.joined = joined
        self.joined_s = joined_s
        self.system_s = system_s
        self.bridge_s = 0
        self.abandoned_s = 0
        self.serving_agent = ""
        self.state = "Waiting"
        self.agent: Optional[Agent] = None
        self.agent_uuid = ""
        self.called_s = 0
        self.answered_s = 0
        self.wait_ms = 0.0


class CallCenter:
    """The module's state; every method runs in the simulator's hub."""

    def __init__(self, switch, log_limit: Optional[int] = None):
        self._switch = switch
        self._log_limit = log_limit
        self.queues: Dict[str, Queue] = {}
        self.agents: Dict[str, Agent] = {}
        self.tiers: List[Tier] = []
        self.members: List[Member] = []          # every row, abandoned ones included
        self._by_session: Dict[str, Member] = {}
        self._order = 0
        self._dispatch_pending = False
        self._wrap_tokens = 0
        self._pending_schedule: List[Tuple[int, str, str]] = []

    # --- time ----------------------------------------------------------------

    def _now_s(self) -> int:
        return self._switch.clock.now_us() // 1_000_000

    # --- configuration ---------------------------------------------------------

    def add_queue(self, name: str, extension: str, patience_ms: Optional[int] = None,
                  discard_abandoned_after_ms: int = 60000) -> None:
        _check_name("queue name", name)
        _check_name("extension", extension)
        if extension.startswith("&"):
            raise ValueError("a queue's extension is a dialplan extension, not an &application")
        if name in self.queues:
            raise ValueError("queue %r already exists" % name)
        for q in self.queues.values():
            if q.extension == extension:
                raise ValueError("extension %r already leads to queue %r" % (extension, q.name))
        self.queues[name] = Queue(name, extension, _check_ms("patience_ms", patience_ms, allow_none=True),
                                  _check_ms("discard_abandoned_after_ms", discard_abandoned_after_ms),
                                  self._log_limit)

    def add_agent(self, name: str, queue: str, status: str = "Available", talk_ms: int = 60000,
                  wrap_up_ms: int = 0) -> None:
        _check_name("agent name", name)
        if queue not in self.queues:
            raise ValueError("no queue %r (add_queue first)" % (queue,))
        if status not in STATUSES:
            raise ValueError("status must be one of %s, got %r" % (", ".join(STATUSES), status))
        if name in self.agents:
            raise ValueError("agent %r already exists" % name)
        talk = _check_ms("talk_ms", talk_ms)
        wrap = _check_ms("wrap_up_ms", wrap_up_ms)
        self._order += 1
        self.agents[name] = Agent(name, self._order, status, talk, wrap, time.time(), self._now_s())
        self.tiers.append(Tier(queue, name))
        self._kick()

    def set_status(self, agent: str, status: str) -> None:
        if agent not in self.agents:
            raise ValueError("no agent %r" % (agent,))
        if status not in STATUSES:
            raise ValueError("status must be one of %s, got %r" % (", ".join(STATUSES), status))
        self._update_status(self.agents[agent], status)

    def schedule_status(self, at_ms: int, agent: str, status: str) -> None:
        """Change an agent's status ``at_ms`` from now (from the start when not yet started)."""
        at = _check_ms("at_ms", at_ms)
        if agent not in self.agents:
            raise ValueError("no agent %r" % (agent,))
        if status not in STATUSES:
            raise ValueError("status must be one of %s, got %r" % (", ".join(STATUSES), status))
        if self._switch.loop is None:
            self._pending_schedule.append((at, agent, status))
        else:
            self._switch._later(at, self._scheduled, agent, status)

    def started(self) -> None:
        """The hub runs: arm what a script scheduled before the start."""
        pending, self._pending_schedule = self._pending_schedule, []
        for at, agent, status in pending:
            self._switch._later(at, self._scheduled, agent, status)

    def _scheduled(self, agent: str, status: str):
        if agent in self.agents:
            self._update_status(self.agents[agent], status)

    # --- statistics ------------------------------------------------------------

    def stats(self, queue: str) -> Dict[str, Any]:
        """What happened in ``queue``; times in milliseconds of the wall clock.

        ``waiting`` members waiting now, ``max_waiting`` the most ever waiting at
        once, ``offered`` members that entered, ``bridged`` taken by an agent,
        ``abandoned`` left before an agent took them; ``agents`` per agent:
        ``talk_ms`` (bridged), ``wrap_up_ms``, ``busy_ms`` (talk + wrap-up),
        ``available_ms`` (status Available or Available (On Demand)),
        ``logged_in_ms`` (any status but Logged Out), ``calls``, ``status``,
        ``state``; ``talk_ms``/``busy_ms``/``available_ms``/``logged_in_ms``
        their sums; ``occupancy`` = talk_ms / available_ms (None before any
        available time); ``abandon_rate`` = abandoned / offered (None before
        any); ``members`` one dict per member (``uuid``, ``session_uuid``,
        ``joined``, ``left``, ``wait_ms``, ``result`` waiting/bridged/abandoned,
        ``agent``); ``events`` (time.time(), description) pairs.
        """
        q = self.queues.get(queue)
        if q is None:
            raise ValueError("no queue %r" % (queue,))
        now = time.time()
        agents = {}
        for tier in self.tiers:
            if tier.queue != queue or tier.agent not in self.agents:
                continue
            a = self.agents[tier.agent]
            a.account(now)
            talk = a.total_talk_ms
            if a.bridge_started is not None:
                talk += (now - a.bridge_started) * 1000.0
            wrap = a.total_wrap_ms
            if a.wrap_started is not None:
                wrap += min(a.wrap_up_ms, (now - a.wrap_started) * 1000.0)
            agents[a.name] = {"status": a.status, "state": a.state, "calls": a.calls,
                              "talk_ms": talk, "wrap_up_ms": wrap, "busy_ms": talk + wrap,
                              "available_ms": a.available_ms, "logged_in_ms": a.logged_in_ms}
        sums = {k: sum(v[k] for v in agents.values())
                for k in ("talk_ms", "wrap_up_ms", "busy_ms", "available_ms", "logged_in_ms")}
        members = [dict(m) for m in q.members_log]
        for m in self.members:
            if m.queue is q and m.state in ("Waiting", "Trying"):
                members.append({"uuid": m.uuid, "session_uuid": m.session_uuid, "joined": m.joined,
                                "left": None, "wait_ms": (now - m.joined) * 1000.0, "result": "waiting",
                                "agent": None})
        out = {"queue": queue, "waiting": self._waiting(q), "max_waiting": q.max_waiting,
               "offered": q.offered, "bridged": q.bridged, "abandoned": q.abandoned,
               "agents": agents, "members": members, "events": list(q.log)}
        out.update(sums)
        out["occupancy"] = sums["talk_ms"] / sums["available_ms"] if sums["available_ms"] > 0 else None
        out["abandon_rate"] = q.abandoned / q.offered if q.offered else None
        return out

    def _waiting(self, q: Queue) -> int:
        return sum(1 for m in self.members if m.queue is q and m.state in ("Waiting", "Trying"))

    def _note(self, queue: Optional[Queue], text: str):
        if queue is not None:
            queue.log.append((time.time(), text))

    def _agent_queues(self, agent: Agent) -> List[Queue]:
        return [self.queues[t.queue] for t in self.tiers if t.agent == agent.name and t.queue in self.queues]

    # --- events ----------------------------------------------------------------

    def _fire(self, calling: str, fields: List[Tuple[str, str]], ch=None):
        switch = self._switch
        switch._emit("CUSTOM", switch._render.custom_event, SUBCLASS, _CALLING[calling], fields, ch,
                     subclass=SUBCLASS)

    def _agent_state(self, agent: Agent, state: str):
        agent.state = state
        if state == "Receiving":
            agent.last_offered_us = self._switch.clock.now_us()
        self._fire("cc_agent_update", [("CC-Agent", agent.name), ("CC-Action", "agent-state-change"),
                                       ("CC-Agent-State", state)])
        for q in self._agent_queues(agent):
            self._note(q, "agent-state-change %s %s" % (agent.name, state))

    def _update_status(self, agent: Agent, value: str):
        """``agent set status``: stored as given, as the module's UPDATE does."""
        now = time.time()
        agent.account(now)
        if _status_of(value) == "Available":
            # The module's UPDATE ... AND NOT status = value: setting it again changes nothing.
            if agent.status != value:
                agent.talk_time_ms = 0
                agent.calls_answered = 0
                agent.no_answer_count = 0
                agent.status = value
                agent.last_status_change = self._now_s()
        else:
            agent.status = value
            agent.last_status_change = self._now_s()
        self._fire("cc_agent_update", [("CC-Agent", agent.name), ("CC-Action", "agent-status-change"),
                                       ("CC-Agent-Status", value)])
        for q in self._agent_queues(agent):
            self._note(q, "agent-status-change %s %s" % (agent.name, value))
        self._kick()

    def _members_count(self, q: Queue):
        self._fire("cc_queue_count", [("CC-Queue", q.name), ("CC-Action", "members-count"),
                                      ("CC-Count", str(self._waiting(q))), ("CC-Selection", "Single-Queue")])

    def _member_fields(self, m: Member) -> List[Tuple[str, str]]:
        return [("CC-Member-UUID", m.uuid), ("CC-Member-Session-UUID", m.session_uuid),
                ("CC-Member-CID-Name", m.cid_name), ("CC-Member-CID-Number", m.cid_number)]

    # --- members ---------------------------------------------------------------

    def enter(self, ch) -> bool:
        """An answered call runs its extension: True when that is a queue it joined."""
        q = next((q for q in self.queues.values() if q.extension == ch.rec.extension), None)
        if q is None:
            return False
        now_s = self._now_s()
        m = Member(q, ch, time.time(), now_s, (ch.answered_at or 0) // 1_000_000)
        ch.set_vars += [("cc_side", "member"), ("cc_member_uuid", m.uuid)]
        self._fire("callcenter_function", [("CC-Queue", q.name), ("CC-Action", "member-queue-start")]
                   + self._member_fields(m), ch)
        ch.set_vars += [("cc_queue_joined_epoch", str(now_s)), ("cc_queue", q.name)]
        self.members.append(m)
        self._by_session[ch.uuid] = m
        q.offered += 1
        q.max_waiting = max(q.max_waiting, self._waiting(q))
        self._note(q, "member-queue-start %s" % ch.uuid)
        self._members_count(q)
        if q.patience_ms is not None:
            ch.timer = self._switch._schedule(q.patience_ms, self._patience_over, ch, m)
        self._kick()
        return True

    def _patience_over(self, ch, m: Member):
        ch.timer = None
        if m.state == "Waiting" and self._switch.channels.get(ch.uuid) is ch:
            # The caller gives up and hangs up, as a person on hold does.
            self._switch._far_end_bye(ch)

    def channel_gone(self, ch) -> None:
        """The hangup of a member's channel, seen by the queue application and the agent's thread."""
        m = self._by_session.pop(ch.uuid, None)
        if m is None:
            return
        q = m.queue
        now = time.time()
        now_s = self._now_s()
        if m.state == "Answered" and m.agent is not None:
            a = m.agent
            self._fire("outbound_agent_thread_run", [
                ("CC-Queue", q.name), ("CC-Action", "bridge-agent-end"), ("CC-Hangup-Cause", "NONE"),
                ("CC-Agent", a.name), ("CC-Agent-System", SYSTEM), ("CC-Agent-UUID", m.agent_uuid),
                ("CC-Agent-Called-Time", str(m.called_s)), ("CC-Agent-Answered-Time", str(m.answered_s)),
                ("CC-Member-Joined-Time", str(m.joined_s)), ("CC-Bridge-Terminated-Time", str(now_s)),
            ] + self._member_fields(m))
            ch.set_vars.append(("cc_queue_terminated_epoch", str(now_s)))
            talked = (now - a.bridge_started) * 1000.0 if a.bridge_started is not None else 0.0
            a.total_talk_ms += talked
            a.talk_time_ms += talked
            a.bridge_started = None
            a.last_bridge_end = now_s
            a.uuid = ""
            a.member = None
            self._remove(m)
            self._fire("outbound_agent_thread_run", [
                ("CC-Queue", q.name), ("CC-Action", "member-queue-end"), ("CC-Hangup-Cause", "NONE"),
                ("CC-Cause", "Terminated"), ("CC-Agent", a.name), ("CC-Agent-System", SYSTEM),
                ("CC-Agent-UUID", m.agent_uuid), ("CC-Agent-Called-Time", str(m.called_s)),
                ("CC-Agent-Answered-Time", str(m.answered_s)), ("CC-Member-Leaving-Time", str(now_s)),
                ("CC-Member-Joined-Time", str(m.joined_s)),
            ] + self._member_fields(m), ch)
            q.members_log.append({"uuid": m.uuid, "session_uuid": m.session_uuid, "joined": m.joined,
                                  "left": now, "wait_ms": m.wait_ms, "result": "bridged", "agent": a.name})
            self._note(q, "member-queue-end %s Terminated %s" % (ch.uuid, a.name))
            for tier in self.tiers:
                if tier.agent == a.name and tier.queue == q.name:
                    tier.state = "Ready"
            if a.wrap_up_ms > 0:
                self._wrap_tokens += 1
                a.wrapping = self._wrap_tokens
                a.wrap_started = now
                self._switch._later(a.wrap_up_ms, self._wrap_done, a, a.wrapping)
            self._agent_state(a, "Idle" if a.status == "Available (On Demand)" else "Waiting")
            self._kick()
            return
        # Left before an agent took it: the row stays, abandoned, for a while.
        m.state = "Abandoned"
        m.abandoned_s = now_s
        self._fire("callcenter_function", [
            ("CC-Queue", q.name), ("CC-Action", "member-queue-end"),
            ("CC-Member-Leaving-Time", str(now_s)), ("CC-Member-Joined-Time", str(m.joined_s)),
            ("CC-Cause", "Cancel"), ("CC-Cancel-Reason", "BREAK_OUT"),
        ] + self._member_fields(m), ch)
        ch.set_vars += [("cc_queue_canceled_epoch", str(now_s)), ("cc_cause", "cancel"),
                        ("cc_cancel_reason", "BREAK_OUT")]
        q.abandoned += 1
        q.members_log.append({"uuid": m.uuid, "session_uuid": m.session_uuid, "joined": m.joined,
                              "left": now, "wait_ms": (now - m.joined) * 1000.0, "result": "abandoned",
                              "agent": None})
        self._note(q, "member-queue-end %s Cancel BREAK_OUT" % ch.uuid)
        self._members_count(q)
        self._switch._later(q.discard_ms, self._discard, m)

    def _remove(self, m: Member):
        try:
            self.members.remove(m)
        except ValueError:
            pass

    def _discard(self, m: Member):
        if m.state == "Abandoned":
            self._remove(m)

    def _wrap_done(self, a: Agent, token: int):
        if a.wrapping != token:
            return
        a.wrapping = 0
        if a.wrap_started is not None:
            a.total_wrap_ms += a.wrap_up_ms
            a.wrap_started = None
        self._kick()

    def forget_members(self) -> None:
        """A restarted switch: no members, no calls, no timers; agents and queues stay."""
        now = time.time()
        self.members = []
        self._by_session = {}
        self._dispatch_pending = False
        for a in self.agents.values():
            if a.bridge_started is not None:
                a.total_talk_ms += (now - a.bridge_started) * 1000.0
                a.bridge_started = None
            if a.wrap_started is not None:
                a.total_wrap_ms += min(a.wrap_up_ms, (now - a.wrap_started) * 1000.0)
                a.wrap_started = None
            a.wrapping = 0
            a.member = None
            a.uuid = ""
            if a.state in ("Receiving", "In a queue call"):
                a.state = "Waiting"
        for tier in self.tiers:
            if tier.state in ("Offering", "Active Inbound"):
                tier.state = "Ready"

    # --- dispatch --------------------------------------------------------------

    def _kick(self):
        """Look for member/agent pairs once the current work is done, as the module's
        dispatch thread does on its next round."""
        loop = self._switch.loop
        if self._dispatch_pending or loop is None:
            return
        self._dispatch_pending = True
        loop.run_callback(self._switch._guarded, self._dispatch, ())

    def _eligible(self, a: Agent, tier: Tier, now_s: int) -> bool:
        return (a.status in _OFFERABLE and a.state == "Waiting" and not a.wrapping
                and tier.state in ("Ready", "No Answer") and a.ready_time <= now_s and a.member is None)

    def _dispatch(self):
        if not self._dispatch_pending:
            return
        self._dispatch_pending = False
        now_s = self._now_s()
        waiting = sorted((m for m in self.members if m.state == "Waiting"), key=lambda m: m.joined)
        for m in waiting:
            if m.state != "Waiting" or self._switch.channels.get(m.session_uuid) is not m.ch:
                continue
            candidates = []
            for tier in self.tiers:
                if tier.queue != m.queue.name:
                    continue
                a = self.agents.get(tier.agent)
                if a is not None and self._eligible(a, tier, now_s):
                    candidates.append((tier.level, a.last_offered_us, tier.position, a.order, a, tier))
            if not candidates:
                continue
            candidates.sort(key=lambda c: c[:4])
            self._bridge(m, candidates[0][4], candidates[0][5])

    def _bridge(self, m: Member, a: Agent, tier: Tier):
        q = m.queue
        ch = m.ch
        now = time.time()
        now_s = self._now_s()
        m.state = "Trying"
        m.serving_agent = a.name
        m.agent = a
        a.member = m
        m.called_s = now_s
        self._agent_state(a, "Receiving")
        tier.state = "Offering"
        self._fire("outbound_agent_thread_run", [
            ("CC-Queue", q.name), ("CC-Action", "agent-offering"), ("CC-Agent", a.name),
            ("CC-Agent-Type", a.type), ("CC-Agent-System", SYSTEM)] + self._member_fields(m)
            + [("CC-Member-DNIS", m.dnis)])
        # The agent answers at once.
        m.answered_s = now_s
        m.agent_uuid = str(uuidlib.uuid4())
        self._fire("outbound_agent_thread_run", [
            ("CC-Queue", q.name), ("CC-Action", "bridge-agent-start"), ("CC-Agent", a.name),
            ("CC-Agent-System", SYSTEM), ("CC-Agent-UUID", m.agent_uuid),
            ("CC-Agent-Called-Time", str(m.called_s)), ("CC-Agent-Answered-Time", str(m.answered_s)),
            ("CC-Member-Joined-Time", str(m.joined_s))] + self._member_fields(m)
            + [("CC-Member-DNIS", m.dnis)])
        ch.set_vars += [("cc_agent", a.name), ("cc_queue_answered_epoch", str(now_s)),
                        ("cc_agent_uuid", m.agent_uuid), ("cc_cause", "answered")]
        a.uuid = m.agent_uuid
        a.last_bridge_start = now_s
        a.calls_answered += 1
        a.no_answer_count = 0
        a.calls += 1
        a.bridge_started = now
        if a.wrap_started is not None:
            a.total_wrap_ms += min(a.wrap_up_ms, (now - a.wrap_started) * 1000.0)
            a.wrap_started = None
        tier.state = "Active Inbound"
        m.state = "Answered"
        m.bridge_s = now_s
        m.wait_ms = (now - m.joined) * 1000.0
        q.bridged += 1
        self._note(q, "bridge-agent-start %s %s" % (ch.uuid, a.name))
        self._members_count(q)
        self._agent_state(a, "In a queue call")
        if ch.timer is not None:
            ch.timer.close()
        ch.timer = self._switch._schedule(a.talk_ms, self._talk_over, ch)

    def _talk_over(self, ch):
        ch.timer = None
        self._switch._far_end_bye(ch)

    # --- callcenter_config -----------------------------------------------------

    def api(self, arg: Optional[str]) -> str:
        if not arg:
            return "-USAGE: \n%s\n" % USAGE
        argv = separate_string(arg, " ", 8)
        if len(argv) < 2:
            return "-ERR Invalid!\n"
        section, action, rest = argv[0].lower(), argv[1].lower(), argv[2:]
        if section == "agent":
            return self._api_agent(action, rest)
        if section == "tier":
            return self._api_tier(action, rest)
        if section == "queue":
            return self._api_queue(action, rest)
        # The module writes nothing for a section it does not know.
        return ""

    def _api_agent(self, action: str, rest: List[str]) -> str:
        if action == "add":
            if len(rest) < 2:
                return "-ERR Invalid!\n"
            name, agent_type = rest[0], rest[1]
            if agent_type.lower() not in _AGENT_TYPES:
                return "-ERR Agent type invalid!\n"
            if name in self.agents:
                return "-ERR Agent already exist!\n"
            self._order += 1
            a = Agent(name, self._order, "Logged Out", 60000, 0, time.time(), self._now_s(), agent_type)
            a.contact = ""
            self.agents[name] = a
            return "+OK\n"
        if action == "del":
            if len(rest) < 1:
                return "-ERR Invalid!\n"
            self.agents.pop(rest[0], None)
            self.tiers = [t for t in self.tiers if t.agent != rest[0]]
            return "+OK\n"
        if action == "set":
            if len(rest) < 3:
                return "-ERR Invalid!\n"
            return self._agent_set(rest[0].lower(), rest[1], rest[2])
        if action == "get":
            if len(rest) < 2:
                return "-ERR Invalid!\n"
            a = self.agents.get(rest[1])
            if a is None:
                return "-ERR Agent not found!\n"
            key = rest[0].lower()
            if key == "status":
                self._fire("cc_agent_get", [("CC-Agent", a.name), ("CC-Action", "agent-status-get"),
                                            ("CC-Agent-Status", a.status)])
                return a.status
            if key == "state":
                self._fire("cc_agent_get", [("CC-Agent", a.name), ("CC-Action", "agent-state-get"),
                                            ("CC-Agent-State", a.state)])
                return a.state
            if key == "uuid":
                return a.uuid
            return "-ERR Invalid Agent Update KEY!\n"
        if action == "list":
            if len(rest) > 1:
                return "-ERR Invalid!\n"
            agents = [a for a in self.agents.values() if not rest or a.name == rest[0]]
            return self._rows(AGENT_COLUMNS, [self._agent_row(a) for a in agents])
        return ""

    def _agent_set(self, key: str, name: str, value: str) -> str:
        a = self.agents.get(name)
        if a is None:
            return "-ERR Agent not found!\n"
        if key == "status":
            if _status_of(value) is None:
                return "-ERR Invalid Agent Status!\n"
            self._update_status(a, value)
            return "+OK\n"
        if key == "state":
            state = _state_of(value)
            if state is None:
                return "-ERR Invalid Agent State!\n"
            self._agent_state(a, value)
            self._kick()
            return "+OK\n"
        if key == "type":
            if value.lower() not in _AGENT_TYPES:
                return "-ERR Invalid Agent Type!\n"
            a.type = value
            return "+OK\n"
        if key in ("contact", "uuid"):
            setattr(a, key, value)
            return "+OK\n"
        numeric = ("ready_time", "busy_delay_time", "reject_delay_time", "no_answer_delay_time",
                   "max_no_answer", "wrap_up_time")
        if key in numeric:
            digits = len(value) - len(value.lstrip("0123456789"))
            number = int(value[:digits]) if digits else 0
            if key == "wrap_up_time":
                a.wrap_up_ms = number * 1000
            else:
                setattr(a, key, number)
            self._kick()
            return "+OK\n"
        return "-ERR Invalid Agent Update KEY!\n"

    def _agent_row(self, a: Agent) -> List[str]:
        return [a.name, SYSTEM, a.uuid, a.type, a.contact, a.status, a.state, str(a.max_no_answer),
                str(a.wrap_up_ms // 1000), str(a.reject_delay_time), str(a.busy_delay_time),
                str(a.no_answer_delay_time), str(a.last_bridge_start), str(a.last_bridge_end),
                str(a.last_offered_us // 1_000_000), str(a.last_status_change), str(a.no_answer_count),
                str(a.calls_answered), str(int(a.talk_time_ms // 1000)), str(a.ready_time), "0"]

    def _member_row(self, m: Member) -> List[str]:
        return [m.queue.name, SYSTEM, m.uuid, "" if m.state == "Abandoned" else m.session_uuid,
                m.cid_number, m.cid_name, str(m.system_s), str(m.joined_s), "0", str(m.bridge_s),
                str(m.abandoned_s), "0", "0", m.serving_agent, SYSTEM if m.serving_agent else "", m.state]

    @staticmethod
    def _rows(header: str, rows: List[List[str]]) -> str:
        if not rows:
            return "+OK\n"
        return header + "\n" + "".join("|".join(r) + "\n" for r in rows) + "+OK\n"

    def _api_tier(self, action: str, rest: List[str]) -> str:
        if action == "add":
            if len(rest) < 2:
                return "-ERR Invalid!\n"
            queue, agent = rest[0], rest[1]
            if queue not in self.queues:
                return "-ERR Queue not found!\n"
            if agent not in self.agents:
                return "-ERR Agent not found!\n"
            if any(t.queue == queue and t.agent == agent for t in self.tiers):
                return "-ERR Tier already exist!\n"

            def number(i):
                text = rest[i] if len(rest) > i else "1"
                digits = len(text) - len(text.lstrip("0123456789"))
                return int(text[:digits]) if digits else 0
            self.tiers.append(Tier(queue, agent, number(2), number(3)))
            self._kick()
            return "+OK\n"
        if action == "del":
            if len(rest) < 2:
                return "-ERR Invalid!\n"
            self.tiers = [t for t in self.tiers if not (t.queue == rest[0] and t.agent == rest[1])]
            return "+OK\n"
        if action == "list":
            tiers = sorted(self.tiers, key=lambda t: (t.level, t.position))
            return self._rows(TIER_COLUMNS, [[t.queue, t.agent, t.state, str(t.level), str(t.position)]
                                             for t in tiers])
        return ""

    def _api_queue(self, action: str, rest: List[str]) -> str:
        if action in ("load", "reload"):
            if len(rest) < 1:
                return "-ERR Invalid!\n"
            return "+OK\n" if rest[0] in self.queues else "-ERR Invalid Queue not found!\n"
        if action == "unload":
            return "+OK\n" if rest else "-ERR Invalid!\n"
        if action == "list":
            if not rest:
                rows = ["%s|longest-idle-agent|local_stream://moh|queue|false|0|false|true|%d|false|0|0|5||"
                        "%d|%d|0|true|On Break\n" % (q.name, q.discard_ms // 1000, q.bridged, q.abandoned)
                        for q in self.queues.values()]
                return QUEUE_COLUMNS + "\n" + "".join(rows) + "+OK\n"
            sub, queue = rest[0].lower(), rest[1] if len(rest) > 1 else ""
            if sub == "agents":
                agents = self._queue_agents(queue, rest[2:])
                return self._rows(AGENT_COLUMNS, [self._agent_row(a) for a in agents])
            if sub == "members":
                return self._rows(MEMBER_COLUMNS, [self._member_row(m) for m in self.members
                                                   if m.queue.name == queue])
            if sub == "tiers":
                return self._rows(TIER_COLUMNS, [[t.queue, t.agent, t.state, str(t.level), str(t.position)]
                                                 for t in self.tiers if t.queue == queue])
            return "-ERR Invalid!\n"
        if action == "count":
            if not rest:
                return "%d\n" % len(self.queues)
            sub, queue = rest[0].lower(), rest[1] if len(rest) > 1 else ""
            if sub == "agents":
                return "%d\n" % len(self._queue_agents(queue, rest[2:]))
            if sub == "members":
                return "%d\n" % sum(1 for m in self.members if m.queue.name == queue)
            if sub == "tiers":
                return "%d\n" % sum(1 for t in self.tiers if t.queue == queue)
            return "-ERR Invalid!\n"
        return ""

    def _queue_agents(self, queue: str, filters: List[str]) -> List[Agent]:
        """Agents with a tier in ``queue``, filtered on status and state as the module's
        SQL does it (an exact match)."""
        status = filters[0] if filters else None
        state = filters[1] if len(filters) > 1 else None
        out = []
        for tier in self.tiers:
            a = self.agents.get(tier.agent)
            if tier.queue != queue or a is None:
                continue
            if status is not None and a.status != status:
                continue
            if state is not None and a.state != state:
                continue
            out.append(a)
        return out


class CallCenterScripting:
    """``sim.callcenter``: the module's scripting API, run in the simulator's hub."""

    def __init__(self, call: Callable, cc: CallCenter):
        self._call = call
        self._cc = cc

    def add_queue(self, name: str, extension: str, patience_ms: Optional[int] = None,
                  discard_abandoned_after_ms: int = 60000) -> None:
        """Calls to ``extension`` join queue ``name`` when answered; a member waits at most
        ``patience_ms`` (None: until its call ends otherwise) for an agent, then hangs up."""
        self._call(self._cc.add_queue, name, extension, patience_ms, discard_abandoned_after_ms)

    def add_agent(self, name: str, queue: str, status: str = "Available", talk_ms: int = 60000,
                  wrap_up_ms: int = 0) -> None:
        """An agent of ``queue`` (a tier, level 1 position 1) that talks ``talk_ms`` per call
        and is not offered another call for ``wrap_up_ms`` after each."""
        self._call(self._cc.add_agent, name, queue, status, talk_ms, wrap_up_ms)

    def set_status(self, agent: str, status: str) -> None:
        """One of "Logged Out", "Available", "Available (On Demand)", "On Break"."""
        self._call(self._cc.set_status, agent, status)

    def schedule_status(self, at_ms: int, agent: str, status: str) -> None:
        self._call(self._cc.schedule_status, at_ms, agent, status)

    def stats(self, queue: str) -> Dict[str, Any]:
        return self._call(self._cc.stats, queue)


def apply_callcenter_script(cc: CallCenterScripting, script: Dict[str, Any]) -> None:
    """The ``callcenter`` object of a JSON script (see the module docs)."""
    if not isinstance(script, dict):
        raise ValueError("callcenter must be an object")
    unknown = set(script) - {"queues", "agents", "timeline"}
    if unknown:
        raise ValueError("unknown callcenter key(s): %s" % ", ".join(sorted(unknown)))

    def entries(key):
        value = script.get(key) or []
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise ValueError("callcenter.%s must be a list of objects" % key)
        return value

    for q in entries("queues"):
        extra = set(q) - {"name", "extension", "patience_ms", "discard_abandoned_after_ms"}
        if extra:
            raise ValueError("unknown queue field(s): %s" % ", ".join(sorted(extra)))
        cc.add_queue(q.get("name"), q.get("extension"), q.get("patience_ms"),
                     q.get("discard_abandoned_after_ms", 60000))
    for a in entries("agents"):
        extra = set(a) - {"name", "count", "queue", "status", "talk_ms", "wrap_up_ms"}
        if extra:
            raise ValueError("unknown agent field(s): %s" % ", ".join(sorted(extra)))
        name = a.get("name")
        count = a.get("count")
        if count is None:
            names = [name]
        else:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError("count must be a positive integer, got %r" % (count,))
            if not isinstance(name, str) or "{n}" not in name:
                raise ValueError("with count, the name must hold {n}, got %r" % (name,))
            names = [name.replace("{n}", str(i)) for i in range(1, count + 1)]
        for n in names:
            cc.add_agent(n, a.get("queue"), a.get("status", "Available"), a.get("talk_ms", 60000),
                         a.get("wrap_up_ms", 0))
    for t in entries("timeline"):
        extra = set(t) - {"at_ms", "agent", "status"}
        if extra:
            raise ValueError("unknown timeline field(s): %s" % ", ".join(sorted(extra)))
        cc.schedule_status(t.get("at_ms"), t.get("agent"), t.get("status"))
