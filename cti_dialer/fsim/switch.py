"""The simulated switch: its channels, their timers, and the results of jobs.

An originate that gets a channel fires CHANNEL_CREATE, rings for the
scripted time, then either answers (and later hangs up) or hangs up with
the scripted cause. The job that asked for it gets its result when the call
is answered or ends, as FreeSWITCH reports it. What the captures of a real
switch showed is reproduced on purpose:

- a two-leg endpoint (``loopback/``) makes two channels, A (outbound, the
  originate's uuid) and B (inbound, its own uuid); each counts as a session;
- sessions are throttled like the core does it: per one-second window of
  the switch's ticks, ``sps - 1`` admitted, and ``max_sessions`` at most;
  a refused session answers ``-ERR DESTINATION_OUT_OF_ORDER`` with no
  channel, and a refused B leg leaves the A leg up until the originate
  timeout, then NO_ANSWER;
- a failed call's job result and its CHANNEL_HANGUP_COMPLETE come in
  either order, a third of the time the job first, up to 60 ms apart
  (drawn from the simulator's seeded random source);
- ``originate_retries`` dials the same destination again, same uuid, after
  ``originate_retry_sleep_ms``, unless the originate timed out;
- an answered call whose extension is not ``&app`` is transferred to it;
  when ``callcenter`` has a queue on that extension the call joins it and
  the queue, not the outcome's ``hold_ms``, decides when it ends;
- an ``OutcomeMix`` is drawn from once per originate (a retry keeps the draw).

Everything here runs in the simulator's hub; ``lock`` is taken only around
the state other threads copy (channels, records, the originate log).
"""
import copy
import dataclasses
import logging
import random
import time
import uuid as uuidlib
from collections import deque
from typing import Callable, Deque, Dict, FrozenSet, List, Optional, Set

import gevent.event

from .clock import SwitchClock
from .events import BYE_STATUS, LOOPBACK_FAMILY, Q850, SIP_STATUS, EventRenderer, billsec
from .originate import OriginateArgs, OriginateError, parse_originate
from .outcome import Outcome, OutcomeMix

log = logging.getLogger("cti_dialer.fsim")

# What status reports when no throttle is set: the captured switch's settings.
DEFAULT_SPS = 2000
DEFAULT_MAX_SESSIONS = 4000
# How often the job result goes before the hangup events of a failed call,
# and how far apart the two can be.
JOB_FIRST_SHARE = 1 / 3
MAX_SPLIT_TICKS = 3
_SPLIT_TICK_MS = 20
DEFAULT_RETRY_SLEEP_MS = 1000


@dataclasses.dataclass
class OriginateRecord:
    ts: float
    conn_id: int
    job_uuid: Optional[str]
    uuid: str
    variables: Dict[str, str]      # the channel variables the switch set
    dialstring: str
    endpoint: str
    number: str
    extension: str
    dialplan: str
    context: str
    raw: str
    multi_destination: bool
    outcome_kind: str
    cause: str
    # Beyond the basic fields: how it was sent and where it ended up.
    via: str = "bgapi"             # "api" or "bgapi"
    cid_name: Optional[str] = None
    cid_num: Optional[str] = None
    timeout: int = 60
    state: str = ""                # ringing, answered, hungup, failed, forgotten
    answered: bool = False
    billsec: int = 0
    # One record per ring: a retried originate logs each attempt, same uuid.
    attempt: int = 1
    dialed: str = ""               # the destination that really rang
    enterprise: bool = False       # the dial string held ":_:"
    refused_variables: Dict[str, str] = dataclasses.field(default_factory=dict)


class Job:
    """One api or bgapi command; an api caller waits on ``waiter`` for a late result."""

    __slots__ = ("kind", "job_uuid", "command", "arg", "waiter")

    def __init__(self, kind, job_uuid, command, arg):
        self.kind = kind
        self.job_uuid = job_uuid
        self.command = command
        self.arg = arg
        self.waiter = gevent.event.AsyncResult() if kind == "api" else None


class Dial:
    """One originate across its attempts."""

    __slots__ = ("job", "args", "rec", "tries", "attempt", "sleep_ms", "drawn")

    def __init__(self, job: Job, args: OriginateArgs, rec: OriginateRecord, tries: int, sleep_ms: int):
        self.job = job
        self.args = args
        self.rec = rec
        self.tries = tries
        self.attempt = 1
        self.sleep_ms = sleep_ms
        self.drawn: Optional[Outcome] = None   # what an OutcomeMix gave this originate


class Channel:
    __slots__ = ("uuid", "rec", "outcome", "dial", "timer", "name", "leg", "peer", "peer_uuid", "family",
                 "session_id", "created", "answered_at", "transferred_at", "ended_at", "cause",
                 "transfer_id", "sip_status", "set_vars")

    def __init__(self, uuid, rec, outcome, dial, name, leg, family, session_id, created):
        self.uuid = uuid
        self.rec = rec
        self.outcome = outcome
        self.dial = dial             # on the A leg while the originate waits for its result
        self.timer = None
        self.name = name
        self.leg = leg               # None for a one-leg endpoint, else "a" or "b"
        self.peer = None             # the other leg while it is up
        self.peer_uuid = None
        self.family = family         # loopback, null, or another endpoint
        self.session_id = session_id
        self.created = created       # switch times, in microseconds
        self.answered_at = None
        self.transferred_at = None
        self.ended_at = None
        self.cause = ""
        self.transfer_id = None
        self.sip_status = None       # the far end's final SIP response, when the far end ended the call
        # Variables set after the answer (detection results, an application's),
        # in the order they were set; never part of CREATE or ANSWER events.
        self.set_vars: List = []


def switch_true(value: str) -> bool:
    v = value.strip().lower()
    if v in ("yes", "on", "true", "t", "enable", "enabled", "active", "allow"):
        return True
    return v.lstrip("-").isdigit() and int(v) != 0


def _bounded(variables: Dict[str, str], name: str, low: int, high: int, default: int) -> int:
    """An integer setting the switch reads only when it is "true" and within bounds."""
    value = variables.get(name)
    if value is None or not switch_true(value):
        return default
    try:
        n = int(value.strip())
    except ValueError:
        return default
    return n if low <= n <= high else default


def _error_cause(name: str) -> str:
    """The ``error/`` endpoint fails with the cause it is given; an unknown one is NORMAL_CLEARING."""
    upper = name.upper()
    return upper if upper in Q850 or upper == "SYSTEM_SHUTDOWN" else "NORMAL_CLEARING"


class Switch:
    """Channels, throttles and scripted outcomes of one simulated FreeSWITCH.

    ``emit(name, build, *args)`` delivers an event to the clients that listen.
    """

    def __init__(self, emit: Callable, lock, host: str, hostname: str,
                 gateways: Optional[FrozenSet[str]], log_limit: Optional[int],
                 rng: random.Random, clock: SwitchClock):
        self._emit = emit
        self._render = EventRenderer(self)
        self.lock = lock
        self.loop = None                 # the hub's, set when the simulator starts
        self.rng = rng
        self.clock = clock
        self.host = host
        self.hostname = hostname
        self.gateways = gateways         # None accepts every gateway
        self.default_outcome = Outcome.answer()
        self.gateway_outcomes: Dict[str, Outcome] = {}
        self.number_outcomes: Dict[str, Outcome] = {}
        self.callcenter = None           # the mod_callcenter stand-in, set by the simulator
        self.sps: Optional[int] = None
        self.max_sessions: Optional[int] = None
        self.max_concurrent = 0
        self.originate_log: Deque[OriginateRecord] = deque(maxlen=log_limit)
        self.channels: Dict[str, Channel] = {}     # every leg, by uuid
        self.calls = 0                              # A legs (one per live originate)
        self.shutting_down = False
        self._timers: Set[object] = set()           # job results, retries and events still to come
        self.reset_core()

    def reset_core(self):
        """What a FreeSWITCH restart starts afresh: its identity and counters."""
        self.core_uuid = str(uuidlib.uuid4())
        self.started_at = time.time()
        self.sessions_total = 0
        self.peak = 0
        self._peak_minutes: Deque = deque()   # [minute, highest count] of the last five minutes
        self.shutting_down = False
        self._window = None
        self._window_count = 0
        self.sps_last = 0
        self.sps_peak = 0
        self.sps_history: Deque = deque()   # (window, count) of the last five minutes

    # --- throttles -----------------------------------------------------------

    def _roll_window(self, window: int):
        if window == self._window:
            return
        if self._window is not None:
            self.sps_last = self._window_count if window == self._window + 1 else 0
            if self._window_count:
                self.sps_history.append((self._window, self._window_count))
            self.sps_peak = max(self.sps_peak, self._window_count)
        while self.sps_history and self.sps_history[0][0] < window - 300:
            self.sps_history.popleft()
        self._window = window
        self._window_count = 0

    def _request_session(self) -> bool:
        """One session asked of the core, counted even when refused, as the core counts it."""
        self._roll_window(self.clock.window(self.clock.now_us()))
        self._window_count += 1
        if self.sps is not None and self._window_count >= self.sps:
            return False
        if self.max_sessions is not None and len(self.channels) + 1 > self.max_sessions:
            return False
        return True

    def sps_stats(self):
        """(sessions in the last whole window, peak, peak of the last five minutes)."""
        self._roll_window(self.clock.window(self.clock.now_us()))
        recent = max((c for _, c in self.sps_history), default=0)
        return self.sps_last, self.sps_peak, recent

    def _note_sessions(self, count: int):
        minute = int(time.monotonic() // 60)
        buckets = self._peak_minutes
        if buckets and buckets[-1][0] == minute:
            buckets[-1][1] = max(buckets[-1][1], count)
        else:
            buckets.append([minute, count])
        while buckets[0][0] < minute - 5:
            buckets.popleft()

    def sessions_peak_5min(self) -> int:
        self._note_sessions(len(self.channels))
        return max(n for _, n in self._peak_minutes)

    # --- originate -----------------------------------------------------------

    def _log_originate(self, rec: OriginateRecord):
        with self.lock:
            self.originate_log.append(rec)

    def originate(self, conn_id: int, arg: Optional[str], job: Job, raw: str) -> Optional[str]:
        """The job's result now, or None when it comes later (via ``finish_job``)."""
        rec = OriginateRecord(time.time(), conn_id, job.job_uuid, "", {}, "", "", "", "", "", "", raw,
                              False, "", "", via="api" if job.kind == "api" else "bgapi")
        try:
            args = parse_originate(arg)
        except OriginateError as exc:
            rec.outcome_kind, rec.cause, rec.state = exc.kind, exc.cause, "failed"
            self._log_originate(rec)
            return exc.result
        dial = args.dial
        rec.variables = dial.variables
        rec.refused_variables = dial.refused
        rec.dialstring = args.dialstring
        rec.dialed = dial.url
        rec.endpoint = dial.endpoint
        rec.number = dial.number
        rec.extension = args.extension
        rec.dialplan = args.dialplan
        rec.context = args.context
        rec.multi_destination = dial.multi_destination
        rec.enterprise = dial.enterprise
        rec.cid_name = args.cid_name
        rec.cid_num = args.cid_num
        rec.timeout = args.timeout
        rec.uuid = dial.requested.get("origination_uuid") or str(uuidlib.uuid4())
        if self.shutting_down:
            # Taken, never answered: the core makes no new sessions any more.
            rec.outcome_kind, rec.state = "shutdown", "failed"
            self._log_originate(rec)
            return None
        tries = _bounded(dial.requested, "originate_retries", 1, 100, 1)
        sleep_ms = _bounded(dial.requested, "originate_retry_sleep_ms", 500, 60000, DEFAULT_RETRY_SLEEP_MS)
        return self._attempt(Dial(job, args, rec, tries, sleep_ms))

    def _attempt(self, dial: Dial) -> Optional[str]:
        rec = dial.rec
        if dial.attempt > 1:
            rec = dial.rec = copy.copy(rec)
            rec.attempt, rec.ts, rec.answered, rec.billsec = dial.attempt, time.time(), False, 0
        endpoint = rec.endpoint
        failure = None
        if endpoint == "error":
            failure = ("fail", _error_cause(rec.number))
        elif not endpoint:
            failure = ("invalid", "CHAN_NOT_IMPLEMENTED")
        elif rec.uuid in self.channels:
            failure = ("duplicate_uuid", "DESTINATION_OUT_OF_ORDER")
        elif dial.args.dial.gateway and self.gateways is not None and endpoint not in self.gateways:
            failure = ("invalid_gateway", "INVALID_GATEWAY")
        elif not self._request_session():
            failure = ("throttled", "DESTINATION_OUT_OF_ORDER")
        if failure is not None:
            return self._no_channel(dial, failure[0], failure[1], 0)

        outcome = (self.number_outcomes.get(rec.number) or self.gateway_outcomes.get(endpoint)
                   or self.default_outcome)
        if isinstance(outcome, OutcomeMix):
            if dial.drawn is None:
                dial.drawn = outcome.draw()
            outcome = dial.drawn
        rec.outcome_kind = outcome.kind
        rec.cause = outcome.cause
        if not outcome.channel:
            return self._no_channel(dial, outcome.kind, outcome.cause, outcome.ring_ms)

        family = endpoint if endpoint in LOOPBACK_FAMILY else "other"
        if family == "loopback":
            a = self._new_channel(dial, outcome, rec.uuid, "loopback/%s-a" % rec.number, "a", family)
            b_up = outcome.kind != "stalled" and self._request_session()
            b = None
            if b_up:
                b = self._new_channel(dial, outcome, str(uuidlib.uuid4()), "loopback/%s-b" % rec.number,
                                      "b", family)
                a.peer, b.peer, a.peer_uuid, b.peer_uuid = b, a, b.uuid, a.uuid
            self._emit("CHANNEL_CREATE", self._render.channel_event, a)
            if b is not None:
                self._emit("CHANNEL_CREATE", self._render.channel_event, b)
            else:
                # The B leg was never made, so nothing rings: the A leg waits out the timeout.
                rec.outcome_kind, rec.cause = "stalled", "NO_ANSWER"
                outcome = Outcome.stalled()
        else:
            name = rec.dialed if rec.dialed.startswith("sofia/") or family != "other" else (
                "sofia/external/" + rec.number)
            a = self._new_channel(dial, outcome, rec.uuid, name, None, family)
            self._emit("CHANNEL_CREATE", self._render.channel_event, a)
        timeout_ms = rec.timeout * 1000
        if outcome.kind == "stalled" or outcome.ring_ms >= timeout_ms:
            a.timer = self._schedule(timeout_ms, self._timed_out, a)
        else:
            a.timer = self._schedule(outcome.ring_ms, self._ring_done, a)
        return None

    def _new_channel(self, dial: Dial, outcome: Outcome, uuid: str, name: str, leg: Optional[str],
                     family: str) -> Channel:
        rec = dial.rec
        self.sessions_total += 1
        ch = Channel(uuid, rec, outcome, dial if leg != "b" else None, name, leg, family,
                     self.sessions_total, self.clock.now_us())
        with self.lock:
            if leg != "b":
                rec.state = "ringing"
                self.originate_log.append(rec)
                self.calls += 1
                if self.calls > self.max_concurrent:
                    self.max_concurrent = self.calls
            self.channels[uuid] = ch
        count = len(self.channels)
        if count > self.peak:
            self.peak = count
        self._note_sessions(count)
        return ch

    def _no_channel(self, dial: Dial, kind: str, cause: str, ring_ms: int) -> Optional[str]:
        """A failure before any channel exists: only the job hears of it."""
        rec = dial.rec
        rec.outcome_kind, rec.cause, rec.state = kind, cause, "failed"
        self._log_originate(rec)
        if ring_ms > 0:
            self._later(ring_ms, self._attempt_over, dial, cause)
            return None
        if self._retry(dial, False):
            return None
        return "-ERR %s\n" % cause

    def _retry(self, dial: Dial, timed_out: bool) -> bool:
        """Start the next attempt's wait if the originate has tries left."""
        if dial.attempt >= dial.tries or timed_out or self.shutting_down:
            return False
        dial.attempt += 1
        self._later(dial.sleep_ms, self._next_attempt, dial)
        return True

    def _next_attempt(self, dial: Dial):
        result = self._attempt(dial)
        if result is not None:
            self.finish_job(dial.job, result)

    def _attempt_over(self, dial: Dial, cause: str):
        if not self._retry(dial, False):
            self.finish_job(dial.job, "-ERR %s\n" % cause)

    def finish_job(self, job: Optional[Job], text: str):
        """Hand a job its result: to the waiting api caller, or as BACKGROUND_JOB."""
        if job is None:
            return
        if job.kind == "api":
            if not job.waiter.ready():
                job.waiter.set(text)
        else:
            self._emit("BACKGROUND_JOB", self._render.job_event, job, text)

    # --- timers --------------------------------------------------------------

    def _schedule(self, ms: int, fn: Callable, *args):
        if ms <= 0:
            return self.loop.run_callback(self._guarded, fn, args)
        timer = self.loop.timer(ms / 1000.0)
        timer.start(self._fire_timer, timer, fn, args)
        return timer

    def _fire_timer(self, timer, fn, args):
        timer.close()
        self._guarded(fn, args)

    def _later(self, ms: int, fn: Callable, *args):
        """A timer not tied to a channel; a restart cancels it with the rest."""
        holder = []

        def run(*a):
            self._timers.discard(holder[0])
            fn(*a)

        holder.append(self._schedule(ms, run, *args))
        self._timers.add(holder[0])

    @staticmethod
    def _guarded(fn, args):
        try:
            fn(*args)
        except Exception:
            log.exception("fsim timer callback failed")

    # --- call progress -------------------------------------------------------

    def _ring_done(self, a: Channel):
        a.timer = None
        if self.channels.get(a.uuid) is not a:
            return
        outcome = a.outcome
        if outcome.kind != "answer":
            status = outcome.sip_code if outcome.sip_code is not None else SIP_STATUS.get(outcome.cause)
            self.hangup(a, outcome.cause, sip_status=status)
            return
        now = self.clock.now_us()
        legs = [a] + ([a.peer] if a.peer is not None else [])
        for ch in legs:
            ch.answered_at = now
        with self.lock:
            a.rec.state = "answered"
            a.rec.answered = True
        for ch in legs:
            self._emit("CHANNEL_ANSWER", self._render.channel_event, ch)
        if outcome.cleared_at_answer:
            self._far_end_bye(a)
            return
        a.set_vars.extend(outcome.variables)
        dial, a.dial = a.dial, None
        self.finish_job(dial.job, "+OK %s\n" % a.uuid)
        if not a.rec.extension.startswith("&"):
            a.transferred_at = self.clock.now_us()
            if self.callcenter is not None and self.callcenter.enter(a):
                return
        if outcome.hold_ms is not None and self.channels.get(a.uuid) is a:
            a.timer = self._schedule(outcome.hold_ms, self._far_end_bye, a)

    def _far_end_bye(self, a: Channel):
        self.hangup(a, "NORMAL_CLEARING", sip_status=BYE_STATUS)

    def _timed_out(self, a: Channel):
        a.timer = None
        self.hangup(a, "NO_ANSWER", timed_out=True)

    def hangup(self, ch: Channel, cause: str, timed_out: bool = False, sip_status: Optional[int] = None):
        """End the call ``ch`` belongs to, both legs; the B leg goes first.

        ``sip_status`` is the final response of a far end that ended the call;
        None when the switch ends it itself.
        """
        if ch.leg == "b" and ch.peer is not None:
            ch = ch.peer
        if self.channels.get(ch.uuid) is not ch:
            return
        if ch.timer is not None:
            ch.timer.close()
            ch.timer = None
        legs = ([ch.peer] if ch.peer is not None else []) + [ch]
        now = self.clock.now_us()
        for leg in legs:
            leg.ended_at = now
            leg.cause = cause
            leg.sip_status = sip_status
        rec = ch.rec
        with self.lock:
            for leg in legs:
                del self.channels[leg.uuid]
            self.calls -= 1
            rec.state = "hungup"
            rec.cause = cause
            rec.billsec = billsec(ch)
        for leg in legs:
            self._emit("CHANNEL_HANGUP", self._render.channel_event, leg)
        if self.callcenter is not None:
            # The queue application notices the hangup before the session is reported done.
            self.callcenter.channel_gone(ch)
        dial, ch.dial = ch.dial, None
        if dial is None:
            self._hangup_complete(legs)
            return
        if self._retry(dial, timed_out):
            self._hangup_complete(legs)
            return
        result = "-ERR %s\n" % cause
        gap = self.rng.randint(0, MAX_SPLIT_TICKS) * _SPLIT_TICK_MS
        if self.rng.random() < JOB_FIRST_SHARE:
            self.finish_job(dial.job, result)
            self._later(gap, self._hangup_complete, legs)
        else:
            self._hangup_complete(legs)
            self._later(gap, self.finish_job, dial.job, result)

    def _hangup_complete(self, legs: List[Channel]):
        for leg in legs:
            self._emit("CHANNEL_HANGUP_COMPLETE", self._render.channel_event, leg)

    def hangup_all(self, cause: str) -> int:
        calls = [ch for ch in list(self.channels.values()) if ch.leg != "b"]
        for ch in calls:
            self.hangup(ch, cause)
        return len(calls)

    def shutdown(self):
        """What the core does when told to stop: SHUTDOWN, then every call hung up."""
        self.shutting_down = True      # from here on nothing is tried again
        self._emit("SHUTDOWN", self._render.shutdown_event)
        self.hangup_all("SYSTEM_SHUTDOWN")

    def forget_channels(self):
        """Drop every call without events or job results, as a restarted switch has none."""
        with self.lock:
            channels, self.channels = self.channels, {}
            self.calls = 0
            for ch in channels.values():
                ch.rec.state = "forgotten"
        for ch in channels.values():
            if ch.timer is not None:
                ch.timer.close()
                ch.timer = None
            ch.dial = None
        timers, self._timers = self._timers, set()
        for timer in timers:
            timer.close()
        if self.callcenter is not None:
            self.callcenter.forget_members()

    def a_legs(self) -> Dict[str, Channel]:
        return {u: ch for u, ch in self.channels.items() if ch.leg != "b"}

