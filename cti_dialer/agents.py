"""The agents of the mod_callcenter queues that paced tasks dial for, as the switch reports them.

A component (initialize / loop(now) / shutdown): it asks the switch for each
watched queue's agents (``callcenter_config queue list agents``) every
``POLL_INTERVAL`` and follows ``callcenter::info`` events in between, so a
free agent is seen within milliseconds and a missed event costs at most one
poll. It also measures the queue's mean talk time from bridge events, for
the predictive pacer.
"""
import collections
import logging
import time
from typing import Dict

from . import agent_pacing, originate
from .esl import CallcenterInfo, EslError

log = logging.getLogger("cti_dialer.agents")

POLL_INTERVAL = 1.0
# Before any call was measured: assume this talk time (seconds).
PRIOR_TALK = 60.0


class AgentBoard:
    def __init__(self, *, esl, catalog, wakeups):
        self.esl = esl
        self.catalog = catalog
        self.wakeups = wakeups
        self.agents: Dict[str, Dict[str, agent_pacing.Agent]] = collections.defaultdict(dict)   # queue -> agents
        self._talk: Dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=100))
        self._bridged_at: Dict[str, float] = {}        # agent -> its current call's start
        self._failing: Dict[str, str] = {}
        self._touched: Dict[str, float] = {}           # agent -> when an event last changed it (our clock)

    # --- component -------------------------------------------------------------------

    def initialize(self):
        pass

    def shutdown(self):
        pass

    def watched(self):
        return {task.pacing.queue for task in self.catalog.tasks.values() if task.pacing is not None}

    def loop(self, now: float) -> float:
        queues = self.watched()
        for gone in [q for q in self.agents if q not in queues]:
            del self.agents[gone]
        if not queues or not self.esl.ready.is_set():
            return POLL_INTERVAL
        for queue in sorted(queues):
            self.poll(queue)
        return POLL_INTERVAL

    def poll(self, queue: str):
        asked_at = time.time()
        try:
            text = self.esl.api(originate.build_api("callcenter_config", "queue", "list", "agents", queue))
        except EslError as exc:
            log.debug("agents of %s: %s", queue, exc)
            return
        if text.strip() == "+OK":
            text = ""           # no agent in the queue: a listing with no rows (not even the header)
        elif not text.lstrip().startswith("name|"):
            # mod_callcenter not loaded, or no such queue: paced tasks wait.
            if self._failing.get(queue) != text.strip()[:200]:
                log.error("cannot read the agents of mod_callcenter queue %r: %s (its paced tasks do not dial)",
                          queue, text.strip()[:200] or "empty reply")
            self._failing[queue] = text.strip()[:200]
            self.agents[queue] = {}
            return
        if self._failing.pop(queue, None) is not None:
            log.warning("agents of mod_callcenter queue %r readable again", queue)
        fresh = {a.name: a for a in agent_pacing.parse_agent_list(text)}
        before = self.agents.get(queue, {})
        for name, agent in list(fresh.items()):
            old = before.get(name)
            if old is not None and self._touched.get(name, 0.0) >= asked_at:
                # An event that came while the listing was on its way is newer
                # than the listing: keep what it said.
                fresh[name] = old
                continue
            # Events know to the millisecond when a call began; the listing, to the second.
            if name in self._bridged_at and agent.busy():
                agent.last_bridge_start = max(agent.last_bridge_start, self._bridged_at[name])
            if old is not None and old.state != agent.state:
                self._wake(queue)
        self.agents[queue] = fresh

    # --- events ----------------------------------------------------------------------------

    def on_event(self, event: CallcenterInfo):
        agents = None
        if event.queue:
            agents = self.agents.get(event.queue)
        if event.agent and agents is None:
            agents = next((a for a in self.agents.values() if event.agent in a), None)
        if agents is None:
            return
        agent = agents.get(event.agent) if event.agent else None
        action = event.action
        if agent is not None:
            self._touched[agent.name] = time.time()
            if action == "agent-status-change" and event.agent_status:
                agent.status = event.agent_status
            elif action == "agent-state-change" and event.agent_state:
                agent.state = event.agent_state
            # Times on our clock, when the event came: the switch's event clock
            # moves in 20 ms steps and lags ours, and the pacer compares these
            # with our now.
            elif action == "bridge-agent-start":
                agent.state = "In a queue call"
                agent.last_bridge_start = self._bridged_at[agent.name] = time.time()
            elif action == "bridge-agent-end":
                agent.state = agent_pacing.IDLE_STATE
                agent.last_bridge_end = time.time()
                started = self._bridged_at.pop(agent.name, None)
                if started is not None and event.queue:
                    self._talk[event.queue].append(max(0.0, agent.last_bridge_end - started))
        if action in ("agent-status-change", "agent-state-change", "bridge-agent-end", "member-queue-end"):
            self._wake(event.queue)

    def _wake(self, queue: str):
        for task in self.catalog.tasks.values():
            if task.pacing is not None and (not queue or task.pacing.queue == queue):
                self.wakeups.task(task.name)

    # --- for the pacer ---------------------------------------------------------------------

    def mean_talk(self, queue: str) -> float:
        talks = self._talk.get(queue)
        return sum(talks) / len(talks) if talks else PRIOR_TALK

    def view(self, queue: str, now: float) -> agent_pacing.QueueView:
        return agent_pacing.view(self.agents.get(queue, {}), self.mean_talk(queue), now)
