"""The simulated switch: its channels, their timers, and the results of jobs.

An originate that gets a channel fires CHANNEL_CREATE, rings for the
scripted time, then either answers (and later hangs up) or hangs up with
the scripted cause. The job that asked for it gets its result when the call
is answered or ends, as FreeSWITCH reports it.

Everything here runs in the simulator's hub; ``lock`` is taken only around
the state other threads copy (channels, records, the originate log).
"""
import dataclasses
import logging
import time
import uuid as uuidlib
from collections import deque
from typing import Callable, Deque, Dict, FrozenSet, Optional

import gevent.event

from .events import EventRenderer
from .originate import OriginateError, parse_originate
from .outcome import Outcome

log = logging.getLogger("cti_dialer.fsim")


@dataclasses.dataclass
class OriginateRecord:
    ts: float
    conn_id: int
    job_uuid: Optional[str]
    uuid: str
    variables: Dict[str, str]
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


class Job:
    """One api or bgapi command; an api caller waits on ``waiter`` for a late result."""

    __slots__ = ("kind", "job_uuid", "command", "arg", "waiter")

    def __init__(self, kind, job_uuid, command, arg):
        self.kind = kind
        self.job_uuid = job_uuid
        self.command = command
        self.arg = arg
        self.waiter = gevent.event.AsyncResult() if kind == "api" else None


class Channel:
    __slots__ = ("uuid", "rec", "outcome", "job", "timer", "name", "created", "answered_at",
                 "ended_at", "cause", "billsec", "profile", "variables")

    def __init__(self, uuid, rec, outcome, job, name, created):
        self.uuid = uuid
        self.rec = rec
        self.outcome = outcome
        self.job = job
        self.timer = None
        self.name = name
        self.created = created
        self.answered_at = None
        self.ended_at = None
        self.cause = ""
        self.billsec = 0
        self.profile = None      # encoded lazily: only if someone listens
        self.variables = None


class Switch:
    """Channels, throttles and scripted outcomes of one simulated FreeSWITCH.

    ``emit(name, build, *args)`` delivers an event to the clients that listen.
    """

    def __init__(self, emit: Callable, lock, host: str, hostname: str,
                 gateways: Optional[FrozenSet[str]], log_limit: Optional[int]):
        self._emit = emit
        self._render = EventRenderer(self)
        self.lock = lock
        self.loop = None                 # the hub's, set when the simulator starts
        self.host = host
        self.hostname = hostname
        self.gateways = gateways         # None accepts every gateway
        self.default_outcome = Outcome.answer()
        self.gateway_outcomes: Dict[str, Outcome] = {}
        self.number_outcomes: Dict[str, Outcome] = {}
        self.sps: Optional[int] = None
        self.max_sessions: Optional[int] = None
        self.max_concurrent = 0
        self.originate_log: Deque[OriginateRecord] = deque(maxlen=log_limit)
        self.channels: Dict[str, Channel] = {}
        self._route_timers: Dict[Job, object] = {}   # failures still "ringing" without a channel
        self.reset_core()

    def reset_core(self):
        """What a FreeSWITCH restart starts afresh: its identity and counters."""
        self.core_uuid = str(uuidlib.uuid4())
        self.started_at = time.time()
        self.sessions_total = 0
        self.peak = 0
        self._sps_window = 0.0
        self._sps_count = 0
        self.sps_peak = 0

    # --- throttles -----------------------------------------------------------

    def _throttled(self) -> bool:
        if self.max_sessions is not None and len(self.channels) >= self.max_sessions:
            return True
        if self.sps is not None:
            now = time.monotonic()
            if now - self._sps_window >= 1.0:
                self._sps_window = now
                self._sps_count = 0
            if self._sps_count >= self.sps:
                return True
        self._sps_count += 1
        if self._sps_count > self.sps_peak:
            self.sps_peak = self._sps_count
        return False

    def sps_now(self) -> int:
        """Sessions started in the current one-second throttle window."""
        return self._sps_count if time.monotonic() - self._sps_window < 1.0 else 0

    # --- originate -----------------------------------------------------------

    def _log_originate(self, rec: OriginateRecord):
        with self.lock:
            self.originate_log.append(rec)

    def originate(self, conn_id: int, arg: Optional[str], job: Job, raw: str) -> Optional[str]:
        """The job's result now, or None when it comes later (via ``finish_job``)."""
        now = time.time()
        rec = OriginateRecord(now, conn_id, job.job_uuid, "", {}, "", "", "", "", "", "", raw,
                              False, "", "", via="api" if job.kind == "api" else "bgapi")
        try:
            args = parse_originate(arg)
        except OriginateError as exc:
            rec.outcome_kind, rec.cause, rec.state = exc.kind, exc.cause, "failed"
            self._log_originate(rec)
            return exc.result
        dial = args.dial
        rec.variables = dial.variables
        rec.dialstring = args.dialstring
        rec.endpoint = dial.endpoint
        rec.number = dial.number
        rec.extension = args.extension
        rec.dialplan = args.dialplan
        rec.context = args.context
        rec.multi_destination = dial.multi_destination
        rec.cid_name = args.cid_name
        rec.cid_num = args.cid_num
        rec.timeout = args.timeout
        rec.uuid = dial.variables.get("origination_uuid") or str(uuidlib.uuid4())

        failure = None
        if not dial.endpoint:
            failure = ("invalid", "CHAN_NOT_IMPLEMENTED")
        elif self._throttled():
            failure = ("throttled", "DESTINATION_OUT_OF_ORDER")
        elif rec.uuid in self.channels:
            failure = ("duplicate_uuid", "DESTINATION_OUT_OF_ORDER")
        elif dial.gateway and self.gateways is not None and dial.endpoint not in self.gateways:
            failure = ("invalid_gateway", "INVALID_GATEWAY")
        if failure is not None:
            rec.outcome_kind, rec.cause, rec.state = failure[0], failure[1], "failed"
            self._log_originate(rec)
            return "-ERR %s\n" % failure[1]

        outcome = (self.number_outcomes.get(dial.number) or self.gateway_outcomes.get(dial.endpoint)
                   or self.default_outcome)
        rec.outcome_kind = outcome.kind
        rec.cause = outcome.cause
        if not outcome.channel:
            rec.state = "failed"
            self._log_originate(rec)
            result = "-ERR %s\n" % outcome.cause
            if outcome.ring_ms <= 0:
                return result
            self._route_timers[job] = self._schedule(outcome.ring_ms, self._finish_route, job, result)
            return None

        rec.state = "ringing"
        name = dial.url if dial.url.startswith("sofia/") else "sofia/external/" + dial.number
        ch = Channel(rec.uuid, rec, outcome, job, name, now)
        with self.lock:
            self.originate_log.append(rec)
            self.channels[rec.uuid] = ch
            count = len(self.channels)
            if count > self.max_concurrent:
                self.max_concurrent = count
        self.sessions_total += 1
        if count > self.peak:
            self.peak = count
        self._emit("CHANNEL_CREATE", self._render.channel_event, ch)
        ch.timer = self._schedule(outcome.ring_ms, self._ring_done, ch)
        return None

    def _finish_route(self, job: Job, result: str):
        self._route_timers.pop(job, None)
        self.finish_job(job, result)

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

    @staticmethod
    def _guarded(fn, args):
        try:
            fn(*args)
        except Exception:
            log.exception("fsim timer callback failed")

    # --- call progress -------------------------------------------------------

    def _ring_done(self, ch: Channel):
        ch.timer = None
        if self.channels.get(ch.uuid) is not ch:
            return
        outcome = ch.outcome
        if outcome.kind != "answer":
            self.hangup(ch, outcome.cause)
            return
        ch.answered_at = time.time()
        with self.lock:
            ch.rec.state = "answered"
            ch.rec.answered = True
        self._emit("CHANNEL_ANSWER", self._render.channel_event, ch)
        job, ch.job = ch.job, None
        self.finish_job(job, "+OK %s\n" % ch.uuid)
        if outcome.hold_ms is not None and self.channels.get(ch.uuid) is ch:
            ch.timer = self._schedule(outcome.hold_ms, self.hangup, ch, "NORMAL_CLEARING",
                                      outcome.hold_ms // 1000)

    def hangup(self, ch: Channel, cause: str, billsec: Optional[int] = None):
        if self.channels.get(ch.uuid) is not ch:
            return
        if ch.timer is not None:
            ch.timer.close()
            ch.timer = None
        ch.ended_at = time.time()
        if billsec is None:
            billsec = int(ch.ended_at - ch.answered_at) if ch.answered_at is not None else 0
        ch.billsec = billsec
        ch.cause = cause
        with self.lock:
            del self.channels[ch.uuid]
            ch.rec.state = "hungup"
            ch.rec.cause = cause
            ch.rec.billsec = billsec
        self._emit("CHANNEL_HANGUP", self._render.channel_event, ch)
        self._emit("CHANNEL_HANGUP_COMPLETE", self._render.channel_event, ch)
        job, ch.job = ch.job, None
        self.finish_job(job, "-ERR %s\n" % cause)

    def hangup_all(self, cause: str) -> int:
        channels = list(self.channels.values())
        for ch in channels:
            self.hangup(ch, cause)
        return len(channels)

    def forget_channels(self):
        """Drop every call without events or job results, as a restarted switch has none."""
        with self.lock:
            channels, self.channels = self.channels, {}
            for ch in channels.values():
                ch.rec.state = "forgotten"
        for ch in channels.values():
            if ch.timer is not None:
                ch.timer.close()
                ch.timer = None
            ch.job = None
        timers, self._route_timers = self._route_timers, {}
        for timer in timers.values():
            timer.close()
