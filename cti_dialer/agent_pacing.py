"""Agent-aware pacing: how many calls a task may have ringing for the agents of its mod_callcenter queue.

Pure: the agents' state comes in as a ``QueueView`` (built by
``agents.AgentBoard`` from the switch), the task's own history as a
``Measures``; the answer is a number of calls to start now.

Two modes (the task param ``pacing``; absent = a fixed ``limit`` as before):

progressive
    Calls not yet with an agent (ringing, or answered and waiting in the
    queue) never exceed free agents x ``ratio`` (default 1.0): with ratio 1
    no answered call can find every agent busy because of this task.
predictive
    Places calls one at a time while the next one's *risk* stays under the
    task's threshold: the chance that, if it is answered, no agent takes it
    within ``agent_wait``. For each of ``ANSWER_POINTS`` equally likely
    times to answer (quantiles of the task's measured ones) the pacer
    counts the agents free by then plus ``agent_wait`` (free now, and busy
    ones whose call - begun at the bridge, at the queue's measured mean
    talk time, plus wrap-up - ends by then, less answered calls already
    waiting) and the answers expected before it from every call ringing
    for the queue (each with the chance left for it given its age, its
    task's answer rate and times to answer, and the calls placed in this
    look); the risk is the mean over those times of the chance that the
    answers before it take every such agent (a normal approximation of a
    sum of independent answers). The threshold is a stochastic
    approximation on the abandon rate, in log space: each abandoned live
    answer multiplies it by exp(-``STEP``), each one taken in time by
    exp(``STEP`` x target / (1 - target)), with target = ``TARGET_SHARE``
    x ``abandon_cap``: it settles where the share of abandoned answers is
    the target. While the rate over the rolling window (``abandon_window``,
    default 30 min) is at or above ``CUT_FROM`` x the cap (it approaches
    the cap), each abandon also cuts it by ``OVER_CAP_CUT``. Before the task has measured a time to answer it
    dials progressively (ratio 1). Answering machines are neither live
    answers nor abandons.
"""
import bisect
import collections
import dataclasses
import logging
import math
import re
from typing import Deque, List, Mapping, Optional, Sequence, Tuple

log = logging.getLogger("cti_dialer.pacing")

PROGRESSIVE, PREDICTIVE = "progressive", "predictive"
MODES = (PROGRESSIVE, PREDICTIVE)

# mod_callcenter's agent statuses that take calls, and the state of one idle.
AVAILABLE = ("Available", "Available (On Demand)")
IDLE_STATE = "Waiting"

# Predictive controller constants (documented in docs/redis.rst).
STEP = 0.05              # log change of the risk threshold per abandoned live answer
TARGET_SHARE = 0.7       # aim at this share of the cap (an hour is noisy: see docs)
OVER_CAP_CUT = 0.9       # and cut harder while the window's rate is near the cap:
CUT_FROM = 0.9           # at or above this share of it
# The threshold starts here and stays within these bounds.
START_RISK, MIN_RISK, MAX_RISK = 0.005, 1e-6, 0.5
# Answer times the risk is averaged over (equally likely quantiles of the measured ones).
ANSWER_POINTS = 5
# Before a task has measured anything: assume this answer rate.
PRIOR_ANSWER_RATE, PRIOR_WEIGHT = 0.3, 10
# How soon a paced task with ringing calls or an agent coming free looks
# again when nothing wakes it: the risk of its next call changes as its
# calls ring on. A quarter of agent_wait, so a short wait is not overslept,
# between these bounds (a tiny agent_wait must not make the task spin).
MAX_LOOK, MIN_LOOK = 0.05, 0.01
# The most calls one look starts, as a share of the agents logged in.
PER_LOOK_SHARE = 0.1
# A bound whatever the measures say: calls ringing per agent logged in, in expected answers.
RING_CEILING = 3.0


class PacingError(ValueError):
    """The pacing param is malformed; the message says where."""


@dataclasses.dataclass(frozen=True)
class PacingSpec:
    mode: str
    queue: str                      # the mod_callcenter queue answered calls go to (e.g. "sales@default")
    ratio: float = 1.0              # progressive: calls not yet with an agent per free agent
    abandon_cap: float = 0.03       # predictive: the abandon rate to stay under
    abandon_window: float = 1800.0  # seconds of results the abandon rate is measured over
    agent_wait: float = 2.0         # an answered call not with an agent within this long is abandoned


# What the switch's api argument may hold (originate.build_api checks it again).
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")
_FIELDS = {"mode", "queue", "ratio", "abandon_cap", "abandon_window", "agent_wait"}


def parse(value) -> Optional[PacingSpec]:
    """The task's ``pacing`` param, or None (a fixed limit)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PacingError('pacing must be an object such as {"mode": "progressive", "queue": "sales@default"}, '
                          'not %r' % (value,))
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise PacingError("pacing: unknown fields %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(_FIELDS))))
    mode = value.get("mode")
    if mode not in MODES:
        raise PacingError("pacing.mode must be %s, not %r" % (" or ".join(MODES), mode))
    queue = value.get("queue")
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise PacingError("pacing.queue must name a mod_callcenter queue (1..128 of A-Z a-z 0-9 _ . : @ / + = -), "
                          "not %r" % (queue,))

    def number(name, default, low, high):
        v = value.get(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or not low <= v <= high:
            raise PacingError("pacing.%s must be a number %s..%s, not %r" % (name, low, high, v))
        return float(v)

    return PacingSpec(mode=mode, queue=queue, ratio=number("ratio", 1.0, 0.1, 10.0),
                      abandon_cap=number("abandon_cap", 0.03, 0.001, 0.5),
                      abandon_window=number("abandon_window", 1800.0, 10.0, 30 * 86400.0),
                      agent_wait=number("agent_wait", 2.0, 0.0, 600.0))


# --- the switch's agents ---------------------------------------------------------------------

@dataclasses.dataclass
class Agent:
    name: str
    status: str = "Logged Out"
    state: str = IDLE_STATE
    wrap_up: float = 0.0            # seconds after a call before the next is offered
    last_bridge_start: float = 0.0
    last_bridge_end: float = 0.0
    ready_time: float = 0.0         # not offered calls before this (reject/busy/no-answer delays)

    def free(self, now: float) -> bool:
        return (self.status in AVAILABLE and self.state == IDLE_STATE
                and now >= max(self.last_bridge_end + self.wrap_up, self.ready_time))

    def busy(self) -> bool:
        return self.status in AVAILABLE and self.state == "In a queue call"


def parse_agent_list(text: str) -> List[Agent]:
    """``callcenter_config queue list agents <queue>``: a header line, pipe-separated rows, then +OK."""
    lines = [line for line in text.replace("\r", "").split("\n") if line.strip()]
    if not lines or "|" not in lines[0]:
        return []
    header = lines[0].split("|")
    out = []
    for line in lines[1:]:
        if line.startswith("+OK") or line.startswith("-ERR"):
            break
        row = dict(zip(header, line.split("|")))
        if not row.get("name"):
            continue
        out.append(Agent(name=row["name"], status=row.get("status", ""), state=row.get("state", ""),
                         wrap_up=_num(row.get("wrap_up_time")), last_bridge_start=_num(row.get("last_bridge_start")),
                         last_bridge_end=_num(row.get("last_bridge_end")), ready_time=_num(row.get("ready_time"))))
    return out


def _num(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


@dataclasses.dataclass(frozen=True)
class QueueView:
    """A queue's agents as the pacer needs them, at one moment."""
    logged_in: int                  # agents whose status takes calls
    free: int                       # of them, idle with their wrap-up over
    busy_ends: Tuple[float, ...]    # expected end (talk + wrap-up) of each busy agent's call


def view(agents: Mapping[str, Agent], mean_talk: float, now: float) -> QueueView:
    logged = [a for a in agents.values() if a.status in AVAILABLE]
    return QueueView(logged_in=len(logged), free=sum(1 for a in logged if a.free(now)),
                     busy_ends=tuple(sorted(max(now, a.last_bridge_start + mean_talk) + a.wrap_up
                                            for a in logged if a.busy())))


# --- what the task measured ---------------------------------------------------------------

class Measures:
    """A task's recent outcomes (this host): answer rate, times to answer, abandon rate, and the risk threshold."""

    def __init__(self, spec: PacingSpec):
        self.spec = spec
        self.risk = START_RISK
        # [time, kind, value]: kind "attempt" (value 1 if answered), "abandon" (1/0 of a live answer);
        # lists, so that an answer found at the end to be a machine's can be taken back.
        self._events: Deque[List] = collections.deque()
        self._delays: Deque[float] = collections.deque(maxlen=200)
        self._sorted: Optional[List[float]] = None

    def _trim(self, now):
        edge = now - self.spec.abandon_window
        while self._events and self._events[0][0] < edge:
            self._events.popleft()

    def attempt(self, now: float, *, answered: bool, answer_delay: Optional[float] = None) -> List:
        """An attempt's answer (when it comes) or its end unanswered: the answer rate and times to answer.

        Counted at the answer, not the call's end: answered calls end a talk
        time later than unanswered ones, and counting them then would make
        the rate read low for as long as a talk lasts.
        """
        self._trim(now)
        event = [now, "attempt", 1.0 if answered else 0.0]
        self._events.append(event)
        if answered and answer_delay is not None and answer_delay >= 0:
            self._delays.append(answer_delay)
            self._sorted = None
        return event

    @staticmethod
    def machine(event: List):
        """An answer ``attempt`` counted turned out to be a machine's: no answer for the pacer's rate."""
        event[2] = 0.0

    def record(self, now: float, *, live: bool, abandoned: bool = False):
        """A live answer's end: abandoned or not (machines are not recorded)."""
        if not live:
            return
        self._trim(now)
        self._events.append([now, "abandon", 1.0 if abandoned else 0.0])
        if self.spec.mode != PREDICTIVE:
            return
        target = TARGET_SHARE * self.spec.abandon_cap
        if abandoned:
            self.risk *= math.exp(-STEP)
            if self.abandon_rate(now)[0] >= CUT_FROM * self.spec.abandon_cap:
                self.risk *= OVER_CAP_CUT
        else:
            self.risk *= math.exp(STEP * target / (1.0 - target))
        self.risk = min(MAX_RISK, max(MIN_RISK, self.risk))

    def answer_rate(self) -> float:
        attempts = [v for _, kind, v in self._events if kind == "attempt"]
        return (sum(attempts) + PRIOR_ANSWER_RATE * PRIOR_WEIGHT) / (len(attempts) + PRIOR_WEIGHT)

    def delays(self) -> List[float]:
        """The measured times to answer, sorted (empty before the first answer)."""
        if self._sorted is None:
            self._sorted = sorted(self._delays)
        return self._sorted

    def answer_points(self) -> List[float]:
        """``ANSWER_POINTS`` equally likely times to answer: the middle of each share of the measured ones."""
        delays = self.delays()
        n = len(delays)
        return [delays[min(n - 1, int((i + 0.5) * n / ANSWER_POINTS))] for i in range(ANSWER_POINTS)] if n else []

    def answered_within(self, seconds: float) -> float:
        """The share of measured answers that came sooner than ``seconds`` after the call was placed."""
        delays = self.delays()
        return bisect.bisect_left(delays, seconds) / len(delays) if delays else 0.0

    def answer_chances(self, rang: float, within: Sequence[float], rate: Optional[float] = None) -> List[float]:
        """The chances a call that has rung ``rang`` seconds unanswered is answered within each of ``within`` seconds.

        Before any measured answer: the answer rate, whenever (it may answer any moment).
        """
        p = self.answer_rate() if rate is None else rate
        if not self._delays:
            return [p] * len(within)
        before = self.answered_within(rang)
        scale = p / (1.0 - p * before)
        return [scale * (self.answered_within(rang + w) - before) for w in within]

    def abandon_rate(self, now: float) -> Tuple[float, int]:
        """(abandoned / live answers, live answers) over the rolling window."""
        self._trim(now)
        answers = [v for _, kind, v in self._events if kind == "abandon"]
        return (sum(answers) / len(answers) if answers else 0.0), len(answers)


# --- the decision ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Ringing:
    """A call placed and not answered, for the queue: how long it has rung, and its task's measures."""
    rang: float
    measures: "Measures"


def room(spec: PacingSpec, queue: QueueView, measures: Measures, *, ringing: Sequence[Ringing], waiting: int,
         now: float) -> Tuple[int, Optional[float]]:
    """(calls the task may start now for its agents, when the answer next changes or None).

    ``ringing``: every call placed for the queue and not answered (this
    task's and other paced tasks' naming the queue, this host's);
    ``waiting``: their answered calls not yet with an agent.
    The dispatcher also keeps the task within ``limit``.
    """
    if queue.logged_in == 0:
        return 0, None
    points = measures.answer_points() if spec.mode == PREDICTIVE else []
    if not points:
        # Progressive, or predictive before its first measured answer.
        ratio = spec.ratio if spec.mode == PROGRESSIVE else 1.0
        return max(0, math.floor(queue.free * ratio + 1e-9) - len(ringing) - waiting), None
    wait = spec.agent_wait
    look = now + max(MIN_LOOK, min(MAX_LOOK, wait / 4))
    p = measures.answer_rate()
    # Per answer time d: agents free by d + agent_wait, and the mean and
    # variance of the answers that come before d from calls ringing now.
    rates = {}
    for call in ringing:
        if call.measures not in rates:
            rates[call.measures] = call.measures.answer_rate()
    # Per ringing call, its chance to answer within each answer time from now.
    chances = [call.measures.answer_chances(call.rang, points, rates[call.measures]) for call in ringing]
    plan = []
    for i, d in enumerate(points):
        agents = queue.free + sum(1 for end in queue.busy_ends if end <= now + d + wait) - waiting
        mean = sum(c[i] for c in chances)
        var = sum(c[i] * (1.0 - c[i]) for c in chances)
        plan.append((agents, mean, var, p * measures.answered_within(d)))
    ceiling = math.floor(queue.logged_in * RING_CEILING / p) - len(ringing)
    # A few calls per look, not a batch: answers then come spread out over
    # time, as agents free up, and the next look already counts these.
    most = min(ceiling, max(1, math.ceil(queue.logged_in * PER_LOOK_SHARE)))
    out, risk = 0, 0.0
    while out < most:
        risk = sum(_taken(agents, mean + out * q, var + out * q * (1.0 - q)) for agents, mean, var, q in plan) / len(plan)
        if risk > measures.risk:
            break
        out += 1
    horizon = now + points[-1] + wait
    if queue.free > 0 or ringing or waiting or any(end <= horizon for end in queue.busy_ends):
        # The risk moves as calls ring on and agents come free: look again soon.
        next_change = look
    else:
        next_change = min(queue.busy_ends) - points[-1] - wait if queue.busy_ends else None
    log.debug("pacing %s: free %d waiting %d ringing %d p %.2f risk %.4f (threshold %.4f) -> %d",
              spec.queue, queue.free, waiting, len(ringing), p, risk, measures.risk, out)
    return out, next_change


def _taken(agents: int, mean: float, var: float) -> float:
    """The chance that answers coming first (``mean``, ``var``) leave none of ``agents`` free."""
    if agents <= 0:
        return 1.0
    if var <= 1e-9:
        return 1.0 if mean > agents - 0.5 else 0.0
    # At least ``agents`` answers first, with a continuity correction.
    return 0.5 * math.erfc((agents - 0.5 - mean) / math.sqrt(2.0 * var))
