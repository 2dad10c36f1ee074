"""What an attempt's outcome means: fail over, stop, or back off.

Pure tables and small value types; the daemon decides what to do with them.
"""
import dataclasses
import enum
from typing import Optional


class Verdict(str, enum.Enum):
    """How an attempt ended, as written into result records."""
    ANSWERED = "answered"          # the callee answered (whatever the hangup cause)
    MACHINE = "machine"            # answered by an answering machine (the switch's detection said so)
    CALLEE = "callee"              # the callee's side ended it: busy, no answer, rejected...
    ROUTE = "route"                # the line could not carry the call: try the next group
    THROTTLE = "throttle"          # FreeSWITCH refused for capacity: same group, later
    UNKNOWN = "unknown"            # we lost track (ESL drop, restart): never redialed
    DROPPED = "dropped"            # never dialed: expired, or no line (schedule rule)
    REJECTED = "rejected"          # never dialed: malformed or unsafe input


# DESIGN.md §3: causes that say the route, not the callee, failed.
ROUTE_CAUSES = frozenset({
    "GATEWAY_DOWN", "INVALID_GATEWAY", "NORMAL_TEMPORARY_FAILURE",
    "NORMAL_CIRCUIT_CONGESTION", "SWITCH_CONGESTION", "NETWORK_OUT_OF_ORDER",
    "RECOVERY_ON_TIMER_EXPIRE", "REQUESTED_CHAN_UNAVAIL", "NO_ROUTE_DESTINATION",
    "INCOMPATIBLE_DESTINATION",
})

# FreeSWITCH answers an originate refused by sessions-per-second or
# max-sessions with this cause and no channel; from a real far end (with a
# channel) it is an ordinary callee outcome.
THROTTLE_CAUSE = "DESTINATION_OUT_OF_ORDER"

# Every hangup cause FreeSWITCH names (switch_channel.c, CAUSE_CHART, 1.10;
# the last line holds the SIP/STIR causes added late in 1.10). An originate's
# "-ERR <word>" whose word is none of these is not the callee's answer but the
# switch refusing the command itself (an event-socket ACL, a missing module):
# nothing was dialed.
HANGUP_CAUSES = frozenset("""
NONE UNALLOCATED_NUMBER NO_ROUTE_TRANSIT_NET NO_ROUTE_DESTINATION CHANNEL_UNACCEPTABLE
CALL_AWARDED_DELIVERED NORMAL_CLEARING USER_BUSY NO_USER_RESPONSE NO_ANSWER SUBSCRIBER_ABSENT
CALL_REJECTED NUMBER_CHANGED REDIRECTION_TO_NEW_DESTINATION EXCHANGE_ROUTING_ERROR
DESTINATION_OUT_OF_ORDER INVALID_NUMBER_FORMAT FACILITY_REJECTED RESPONSE_TO_STATUS_ENQUIRY
NORMAL_UNSPECIFIED NORMAL_CIRCUIT_CONGESTION NETWORK_OUT_OF_ORDER NORMAL_TEMPORARY_FAILURE
SWITCH_CONGESTION ACCESS_INFO_DISCARDED REQUESTED_CHAN_UNAVAIL PRE_EMPTED FACILITY_NOT_SUBSCRIBED
OUTGOING_CALL_BARRED INCOMING_CALL_BARRED BEARERCAPABILITY_NOTAUTH BEARERCAPABILITY_NOTAVAIL
SERVICE_UNAVAILABLE BEARERCAPABILITY_NOTIMPL CHAN_NOT_IMPLEMENTED FACILITY_NOT_IMPLEMENTED
SERVICE_NOT_IMPLEMENTED INVALID_CALL_REFERENCE INCOMPATIBLE_DESTINATION INVALID_MSG_UNSPECIFIED
MANDATORY_IE_MISSING MESSAGE_TYPE_NONEXIST WRONG_MESSAGE IE_NONEXIST INVALID_IE_CONTENTS
WRONG_CALL_STATE RECOVERY_ON_TIMER_EXPIRE MANDATORY_IE_LENGTH_ERROR PROTOCOL_ERROR INTERWORKING
SUCCESS ORIGINATOR_CANCEL CRASH SYSTEM_SHUTDOWN LOSE_RACE MANAGER_REQUEST BLIND_TRANSFER
ATTENDED_TRANSFER ALLOTTED_TIMEOUT USER_CHALLENGE MEDIA_TIMEOUT PICKED_OFF USER_NOT_REGISTERED
PROGRESS_TIMEOUT INVALID_GATEWAY GATEWAY_DOWN INVALID_URL INVALID_PROFILE NO_PICKUP SRTP_READ_ERROR
BOWOUT BUSY_EVERYWHERE DECLINE DOES_NOT_EXIST_ANYWHERE NOT_ACCEPTABLE UNWANTED NO_IDENTITY
BAD_IDENTITY_INFO UNSUPPORTED_CERTIFICATE INVALID_IDENTITY STALE_DATE REJECT_ALL
""".split())

# Result record causes the daemon makes up for things FreeSWITCH never saw.
CAUSE_UNKNOWN = "UNKNOWN"                 # outcome unknowable; not redialed
CAUSE_NO_LINE = "NO_LINE_AVAILABLE"       # every group tried and none had a free, enabled line
CAUSE_REJECTED = "REJECTED_INPUT"         # refused before reaching the switch
CAUSE_EXPIRED = "EXPIRED"                 # schedule member past its expires
CAUSE_DNC = "DNC_LISTED"                  # number in the do-not-call set
CAUSE_DUPLICATE = "DUPLICATE"             # params.id already taken within the window


def classify(cause: str, *, answered: bool, channel: bool) -> Verdict:
    """Sort a hangup or originate failure cause.

    ``channel`` says whether FreeSWITCH created a channel for the attempt
    (a CHANNEL_HANGUP_COMPLETE was seen); without one, DESTINATION_OUT_OF_ORDER
    is the switch's own throttle. Unknown causes are callee outcomes: ending
    the attempt is always safe, failing over could ring a callee twice.
    """
    if answered:
        return Verdict.ANSWERED
    cause = (cause or "").strip().upper()
    if cause in ROUTE_CAUSES:
        return Verdict.ROUTE
    if cause == THROTTLE_CAUSE and not channel:
        return Verdict.THROTTLE
    if cause == CAUSE_UNKNOWN:
        return Verdict.UNKNOWN
    return Verdict.CALLEE


def parse_job_body(body: str):
    """A BACKGROUND_JOB body for originate: ('+OK', uuid) or ('-ERR', cause).

    Anything else (an empty or garbled body) reads as ('-ERR', 'UNKNOWN') so
    the attempt ends without redial.
    """
    text = (body or "").strip()
    if text.startswith("+OK"):
        return "+OK", text[3:].strip()
    if text.startswith("-ERR"):
        cause = text[4:].strip().split()[0] if text[4:].strip() else CAUSE_UNKNOWN
        return "-ERR", cause.upper()
    return "-ERR", CAUSE_UNKNOWN


def is_switch_fault(job_body: str) -> bool:
    """An originate refused by the switch itself, not answered with a hangup cause.

    ``-ERR permission denied`` (an event-socket ACL), ``-ERR no reply``,
    ``-ERR invalid command``...: nothing was dialed, and nothing about the
    callee is known. An empty or garbled body is not a refusal: it stays
    UNKNOWN (the call may exist).
    """
    text = (job_body or "").strip()
    if not text.startswith("-ERR") or not text[4:].strip():
        return False
    return text[4:].strip().split()[0].upper() not in HANGUP_CAUSES


@dataclasses.dataclass(frozen=True)
class CallFacts:
    """What the switch said about one attempt that reached it, for the line groups' redial rules."""
    sip_code: Optional[int]     # variable_sip_term_status (None: not a SIP call, or no final response)
    q850: Optional[int]         # variable_hangup_cause_q850
    duration: float             # seconds from the originate to the hangup
    billsec: float              # seconds from the answer to the hangup (0 unanswered)


@dataclasses.dataclass
class Attempt:
    """One originate on one line; mutable while the call is followed."""
    uuid: str
    line: str
    group_index: int
    sent_at: float
    job_done: bool = False
    job_ok: Optional[bool] = None
    job_cause: str = ""
    answered_at: Optional[float] = None
    hangup_cause: Optional[str] = None
    billsec: int = 0
    ended_at: Optional[float] = None
    # The channel's times on the switch's clock, from CHANNEL_HANGUP_COMPLETE.
    switch_started: Optional[float] = None
    switch_answered: Optional[float] = None
    switch_ended: Optional[float] = None
    machine: bool = False              # the switch's answering-machine detection fired (machine_variables)
    # Its life in a mod_callcenter queue (paced tasks), from callcenter::info events.
    queue_joined: Optional[float] = None
    agent_at: Optional[float] = None
    agent: str = ""
    left_queue: Optional[float] = None
    answer_seen: Optional[float] = None    # when we heard of its answer (our clock), paced tasks
    pacing_event: Optional[list] = None    # its answer as counted in its task's pacing measures
    sip_code: Optional[int] = None     # variable_sip_term_status of the hangup
    q850: Optional[int] = None         # variable_hangup_cause_q850 of the hangup
    never_rang: bool = False       # the switch refused a second leg: no callee was ever reached
    refused_by_switch: bool = False    # "-ERR" without a hangup cause: the command itself was refused

    def finished(self) -> bool:
        """The attempt is over once the job failed, or succeeded and hung up."""
        if self.job_done and self.job_ok is False:
            return True
        return self.job_done and self.hangup_cause is not None

    def cause(self) -> str:
        if self.never_rang:
            # The switch ran out of capacity for the second leg and let the
            # first wait out its timeout: its NO_ANSWER would blame a callee
            # whose phone never rang.
            return THROTTLE_CAUSE
        if self.hangup_cause is not None:
            return self.hangup_cause
        return self.job_cause or CAUSE_UNKNOWN

    def verdict(self) -> Verdict:
        if self.machine and (self.answered_at is not None or self.billsec > 0):
            return Verdict.MACHINE
        verdict = classify(self.cause(), answered=self.answered_at is not None or self.billsec > 0,
                           channel=self.hangup_cause is not None and not self.never_rang)
        if verdict == Verdict.ROUTE and self.job_ok:
            # originate said +OK (answer or early media): the callee may have
            # heard it ring, so a later route cause must not ring them again.
            return Verdict.CALLEE
        return verdict

    def times(self, now: float):
        """(answered_at, ended_at, ring_time) for the result record, on the daemon's clock.

        The switch's event clock moves in 20 ms steps and lags ours by tens of
        milliseconds, so mixing its times with our ``sent_at`` gave answers
        before the send and zero ring times. Durations are therefore taken
        from the channel's own times (one clock) and laid from ``sent_at``;
        without a channel, our own clock is all there is.
        """
        if self.switch_started is not None:
            ring_end = self.switch_answered or self.switch_ended
            ring = max(0.0, ring_end - self.switch_started) if ring_end else 0.0
            answered = self.sent_at + ring if self.switch_answered else None
            if answered is None and self.answered_at is not None:
                answered = self.sent_at + ring
            ended = self.sent_at + max(0.0, (self.switch_ended or now) - self.switch_started)
            return answered, max(ended, answered or 0.0), round(ring, 3)
        ended = self.ended_at or now
        answered = self.answered_at
        if answered is not None:
            answered = min(max(answered, self.sent_at), ended)
        ended = max(ended, self.sent_at)
        return answered, ended, round(max(0.0, (answered or ended) - self.sent_at), 3) if self.sent_at else 0.0

    def facts(self, now: float) -> CallFacts:
        """What the switch said about this attempt, for the line groups' redial rules.

        A failure without a channel ("-ERR NO_ROUTE_DESTINATION") has no
        Q.850 header: its cause name gives the number.
        """
        answered, ended, _ = self.times(now)
        q850 = self.q850 if self.q850 is not None else Q850.get(self.cause())
        return CallFacts(sip_code=self.sip_code, q850=q850, duration=max(0.0, ended - self.sent_at),
                         billsec=float(self.billsec))

    def line_worked(self, connect_time: Optional[float], now: float) -> Optional[bool]:
        """What this attempt says about its line, for fault detection (mod_cti's fault_condition).

        True: the line carried the call (answered, or it rang at least
        ``connect_time`` seconds); False: a line failure (unanswered, and
        shorter than ``connect_time`` when one is given); None: nothing,
        because the switch itself refused or lost it (capacity, shutdown,
        our own lost track), which is no fault of the line.
        """
        if not self.sent_at or self.refused_by_switch or self.never_rang:
            return None
        verdict = self.verdict()
        if verdict in (Verdict.THROTTLE, Verdict.UNKNOWN, Verdict.DROPPED, Verdict.REJECTED):
            return None
        if verdict in (Verdict.ANSWERED, Verdict.MACHINE):
            return True
        if connect_time is None or self.hangup_cause is None:
            return False        # no channel at all: it never connected
        return self.facts(now).duration >= connect_time


# Q.850 numbers of FreeSWITCH's cause names (switch_types.h),
# for failures that carry a cause name but no variable_hangup_cause_q850.
Q850 = {
    "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3, "CHANNEL_UNACCEPTABLE": 6,
    "CALL_AWARDED_DELIVERED": 7, "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23, "EXCHANGE_ROUTING_ERROR": 25, "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29, "RESPONSE_TO_STATUS_ENQUIRY": 30,
    "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42, "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44, "PRE_EMPTED": 45, "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52, "INCOMING_CALL_BARRED": 54, "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63, "BEARERCAPABILITY_NOTIMPL": 65,
    "CHAN_NOT_IMPLEMENTED": 66, "FACILITY_NOT_IMPLEMENTED": 69, "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81, "INCOMPATIBLE_DESTINATION": 88, "INVALID_MSG_UNSPECIFIED": 95,
    "MANDATORY_IE_MISSING": 96, "MESSAGE_TYPE_NONEXIST": 97, "WRONG_MESSAGE": 98, "IE_NONEXIST": 99,
    "INVALID_IE_CONTENTS": 100, "WRONG_CALL_STATE": 101, "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103, "PROTOCOL_ERROR": 111, "INTERWORKING": 127,
}
# FreeSWITCH's own causes (GATEWAY_DOWN 609, ORIGINATOR_CANCEL 487...) have
# no Q.850 number: switch_channel_cause_q850() reports them as 16, so a rule
# cannot tell them apart by number; without a channel they have none here.


def is_machine(variables, detection) -> bool:
    """Whether a hangup's channel variables report an answering machine.

    ``detection`` is [dialer] machine_variables: (name, VALUE) pairs; a
    value matches without regard to case, as mod_amd and mod_avmd write
    ``MACHINE`` and ``TRUE``.
    """
    found = dict(variables)
    return any(found.get(name, "").strip().upper() == value for name, value in detection)
