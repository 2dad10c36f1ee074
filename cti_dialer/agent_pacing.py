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
    Over-dials from what the task measured, timed to the agents: it keeps
    the answers expected from calls ringing now plus those placed now at
    (agents expected free when an early answer to a call placed now could
    have waited ``agent_wait``) x gain. "Expected free" counts free agents,
    plus busy agents whose call (begun when the event came, at the queue's
    measured mean talk time, plus wrap-up) ends by then, minus answered
    calls already waiting; "an early answer" is the ``EARLY_QUANTILE`` of
    the measured times to answer. A call ringing for t seconds is
    expected to answer with the chance left for it given the measured
    answer rate and the measured times to answer (a call that rang longer
    than any answered one is no answer). The gain is a stochastic
    approximation on the abandon rate: each abandoned live answer lowers it
    by ``STEP``, each one taken in time raises it by STEP x target /
    (1 - target), with target = ``TARGET_SHARE`` x ``abandon_cap``: it
    settles where the share of abandoned answers is the target. While the
    rate over the rolling window (``abandon_window``, default 30 min) is at
    or above the cap, each abandon also cuts it by ``OVER_CAP_CUT``.
    Answering machines are neither live answers nor abandons.
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
STEP = 0.03              # gain change per abandoned live answer
TARGET_SHARE = 0.8       # aim at this share of the cap
OVER_CAP_CUT = 0.9       # and cut harder while the window's rate is over the cap
MIN_GAIN = 0.2
# A task starts cautious: before it measured anything every agent is free,
# and dialing for all of them at once is what abandons calls.
START_GAIN = 0.6
# Before a task has measured anything: assume this answer rate.
PRIOR_ANSWER_RATE, PRIOR_WEIGHT = 0.3, 10
# How soon a paced task with an idle agent looks again when nothing wakes it.
IDLE_AGENT_LOOK = 0.05
# The most calls one look starts, as a share of the agents logged in.
PER_LOOK_SHARE = 0.1
# The share of answers that come sooner than the time the pacer plans for.
EARLY_QUANTILE = 0.2


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
    max_gain: float = 3.0           # predictive: the most the over-dial factor may grow to


# What the switch's api argument may hold (originate.build_api checks it again).
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")
_FIELDS = {"mode", "queue", "ratio", "abandon_cap", "abandon_window", "agent_wait", "max_gain"}


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
                      agent_wait=number("agent_wait", 2.0, 0.0, 600.0),
                      max_gain=number("max_gain", 3.0, 1.0, 20.0))


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
    """A task's recent outcomes (this host): answer rate, times to answer, abandon rate, and the gain."""

    def __init__(self, spec: PacingSpec):
        self.spec = spec
        self.gain = START_GAIN
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
            self.gain -= STEP
            if self.abandon_rate(now)[0] >= self.spec.abandon_cap:
                self.gain *= OVER_CAP_CUT
        else:
            self.gain += STEP * target / (1.0 - target)
        self.gain = min(self.spec.max_gain, max(MIN_GAIN, self.gain))

    def answer_rate(self) -> float:
        attempts = [v for _, kind, v in self._events if kind == "attempt"]
        return (sum(attempts) + PRIOR_ANSWER_RATE * PRIOR_WEIGHT) / (len(attempts) + PRIOR_WEIGHT)

    def early_answer(self) -> float:
        """How soon a call placed now may be answered: the ``EARLY_QUANTILE`` of the measured times (0 before any)."""
        if not self._delays:
            return 0.0
        if self._sorted is None:
            self._sorted = sorted(self._delays)
        return self._sorted[int(EARLY_QUANTILE * (len(self._sorted) - 1))]

    def answer_chance(self, rang: float, rate: Optional[float] = None) -> float:
        """The chance a call that has rung ``rang`` seconds without an answer is still answered."""
        p = self.answer_rate() if rate is None else rate
        if not self._delays:
            return p
        if self._sorted is None:
            self._sorted = sorted(self._delays)
        later = len(self._sorted) - bisect.bisect_right(self._sorted, rang)
        q = p * later / len(self._sorted)
        return q / (q + 1.0 - p) if q > 0 else 0.0

    def abandon_rate(self, now: float) -> Tuple[float, int]:
        """(abandoned / live answers, live answers) over the rolling window."""
        self._trim(now)
        answers = [v for _, kind, v in self._events if kind == "abandon"]
        return (sum(answers) / len(answers) if answers else 0.0), len(answers)


# --- the decision ---------------------------------------------------------------------------

def room(spec: PacingSpec, queue: QueueView, measures: Measures, *, rang: Sequence[float], waiting: int,
         now: float) -> Tuple[int, Optional[float]]:
    """(calls the task may start now for its agents, when the answer next changes or None).

    ``rang``: how long each of its calls placed and not answered has rung;
    ``waiting``: its answered calls not yet with an agent (both this host's).
    The dispatcher also keeps the task within ``limit``.
    """
    if queue.logged_in == 0:
        return 0, None
    if spec.mode == PROGRESSIVE:
        return max(0, math.floor(queue.free * spec.ratio + 1e-9) - len(rang) - waiting), None
    # An agent counts as free for a call placed now if it is free by the time
    # an early answer to that call could have waited its agent_wait.
    reach = measures.early_answer() + spec.agent_wait
    horizon = now + reach
    expected_free = queue.free + sum(1 for end in queue.busy_ends if end <= horizon) - waiting
    later = [end - reach for end in queue.busy_ends if end > horizon]
    next_change = min(later) if later else None
    if queue.free > 0:
        # An agent is idle: every answer or no-answer changes the sum, so look
        # again soon rather than wait for an event that may not come.
        next_change = min(next_change or math.inf, now + IDLE_AGENT_LOOK)
    p = measures.answer_rate()
    pending = sum(measures.answer_chance(age, p) for age in rang)
    need = expected_free * measures.gain - pending
    # Never more ringing than the gain allows per agent logged in: a task that
    # measured nothing yet cannot flood the trunk.
    ceiling = queue.logged_in * spec.max_gain / p - len(rang)
    # A few calls per look, not a batch: answers then come spread out over
    # time, as agents free up, and the next look already counts these.
    per_look = max(1, math.ceil(queue.logged_in * PER_LOOK_SHARE))
    out = max(0, math.floor(min(need / p, ceiling, per_look)))
    log.debug("pacing %s: free %d expected %d waiting %d ringing %d pending %.2f p %.2f gain %.2f reach %.3f -> %d",
              spec.queue, queue.free, expected_free, waiting, len(rang), pending, p, measures.gain, reach, out)
    return out, next_change
