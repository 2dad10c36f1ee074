"""The headers and bodies of the events the simulated switch fires.

Each ``*_event`` method is a builder for ``Connections.emit``: it is called
only when some client listens, with the event name and sequence number
first, and returns ``(headers, body)`` for the wire encoders.
"""
import email.utils
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from .switch import Channel, Job, OriginateRecord, Switch

Headers = List[Tuple[str, str]]

Q850 = {
    "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3,
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "NUMBER_CHANGED": 22,
    "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29,
    "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42, "REQUESTED_CHAN_UNAVAIL": 44,
    "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63, "INCOMPATIBLE_DESTINATION": 88,
    "RECOVERY_ON_TIMER_EXPIRE": 102, "PROTOCOL_ERROR": 111, "INTERWORKING": 127,
    "ORIGINATOR_CANCEL": 487, "MANAGER_REQUEST": 503, "ALLOTTED_TIMEOUT": 602,
    "MEDIA_TIMEOUT": 604, "GATEWAY_DOWN": 609, "INVALID_GATEWAY": 608,
}

# (file, function, line) FreeSWITCH reports as the origin of each event.
_CALLING = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "586"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3993"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3488"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", "1104"),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1572"),
}

# Channel-State / Channel-State-Number / Channel-Call-State / Answer-State per event.
_STATES = {
    "CHANNEL_CREATE": ("CS_INIT", "1", "DOWN", "ringing"),
    "CHANNEL_ANSWER": ("CS_CONSUME_MEDIA", "7", "ACTIVE", "answered"),
    "CHANNEL_HANGUP": ("CS_HANGUP", "10", "HANGUP", "hangup"),
    "CHANNEL_HANGUP_COMPLETE": ("CS_REPORTING", "11", "HANGUP", "hangup"),
}


def microseconds(ts: Optional[float]) -> str:
    """A time as FreeSWITCH's *-Time and *_uepoch values: "0" when it never happened."""
    return str(int(ts * 1_000_000)) if ts else "0"


def local_stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def caller_id(rec: "OriginateRecord") -> Tuple[str, str]:
    """The caller id name and number the outbound leg presents."""
    name = rec.variables.get("origination_caller_id_name") or rec.cid_name or "FreeSWITCH"
    num = rec.variables.get("origination_caller_id_number") or rec.cid_num or "0000000000"
    return name, num


class EventRenderer:
    """Event headers as one switch (its identity read from ``switch``) sends them."""

    def __init__(self, switch: "Switch"):
        self._switch = switch
        # Events come in bursts within one second: format its dates once.
        self._date_cache = (0, "", "")

    def _dates(self, now: float) -> Tuple[str, str]:
        sec = int(now)
        cached = self._date_cache
        if cached[0] != sec:
            cached = (sec, local_stamp(sec), email.utils.formatdate(sec, usegmt=True))
            self._date_cache = cached
        return cached[1], cached[2]

    def _base_headers(self, name: str, seq: int) -> Headers:
        switch = self._switch
        now = time.time()
        local, gmt = self._dates(now)
        cfile, cfunc, cline = _CALLING.get(name, ("switch_event.c", "switch_event_fire", "1"))
        ipv4 = switch.host if switch.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return [
            ("Event-Name", name), ("Core-UUID", switch.core_uuid),
            ("FreeSWITCH-Hostname", switch.hostname), ("FreeSWITCH-Switchname", switch.hostname),
            ("FreeSWITCH-IPv4", ipv4), ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", local), ("Event-Date-GMT", gmt),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", cfile), ("Event-Calling-Function", cfunc),
            ("Event-Calling-Line-Number", cline), ("Event-Sequence", str(seq)),
        ]

    def job_event(self, name: str, seq: int, job: "Job", text: str) -> Tuple[Headers, str]:
        headers = self._base_headers(name, seq)
        headers.append(("Job-UUID", job.job_uuid))
        headers.append(("Job-Command", job.command))
        if job.arg is not None:
            headers.append(("Job-Command-Arg", job.arg))
        return headers, text or "Command returned no output!"

    def channel_event(self, name: str, seq: int, ch: "Channel") -> Tuple[Headers, None]:
        headers = self._base_headers(name, seq)
        state, state_no, call_state, answer_state = _STATES[name]
        hangup = name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")
        if hangup:
            headers.append(("Hangup-Cause", ch.cause))
        elif ch.answered_at is not None and name != "CHANNEL_ANSWER":
            answer_state = "answered"
        if ch.profile is None:
            _describe_channel(ch)
        headers += [
            ("Channel-State", state), ("Channel-Call-State", call_state),
            ("Channel-State-Number", state_no), ("Channel-Name", ch.name),
            ("Unique-ID", ch.uuid), ("Call-Direction", "outbound"),
            ("Presence-Call-Direction", "outbound"), ("Channel-HIT-Dialplan", "false"),
            ("Channel-Call-UUID", ch.uuid), ("Answer-State", answer_state),
        ]
        headers += ch.profile
        headers += [
            ("Caller-Channel-Answered-Time", microseconds(ch.answered_at)),
            ("Caller-Channel-Progress-Time", "0"), ("Caller-Channel-Progress-Media-Time", "0"),
            ("Caller-Channel-Hangup-Time", microseconds(ch.ended_at if hangup else None)),
            ("Caller-Channel-Transfer-Time", "0"), ("Caller-Channel-Resurrect-Time", "0"),
            ("Caller-Channel-Bridged-Time", "0"), ("Caller-Channel-Last-Hold", "0"),
            ("Caller-Channel-Hold-Accum", "0"), ("Caller-Screen-Bit", "true"),
            ("Caller-Privacy-Hide-Name", "false"), ("Caller-Privacy-Hide-Number", "false"),
        ]
        variables = ch.variables
        if ch.answered_at is not None or hangup:
            variables = dict(variables)
            if ch.answered_at is not None:
                variables["endpoint_disposition"] = "ANSWER"
            if hangup:
                variables["hangup_cause"] = ch.cause
                variables["hangup_cause_q850"] = str(Q850.get(ch.cause, 31))
            if name == "CHANNEL_HANGUP_COMPLETE":
                variables.update(timing_variables(ch))
        headers += [("variable_" + k, v) for k, v in variables.items()]
        return headers, None


def _describe_channel(ch: "Channel") -> None:
    """Fill the caller profile and variables that stay the same for the channel's life.

    Done on the first event someone listens to, not at originate: a
    benchmark nobody subscribes to never pays for it.
    """
    rec = ch.rec
    cid_name, cid_num = caller_id(rec)
    created = microseconds(ch.created)
    ch.profile = [
        ("Caller-Direction", "outbound"), ("Caller-Logical-Direction", "outbound"),
        ("Caller-Dialplan", rec.dialplan),
        ("Caller-Caller-ID-Name", cid_name), ("Caller-Caller-ID-Number", cid_num),
        ("Caller-Orig-Caller-ID-Name", cid_name), ("Caller-Orig-Caller-ID-Number", cid_num),
        ("Caller-Callee-ID-Name", "Outbound Call"), ("Caller-Callee-ID-Number", rec.number),
        ("Caller-ANI", cid_num), ("Caller-Destination-Number", rec.number),
        ("Caller-Unique-ID", ch.uuid), ("Caller-Source", "src/switch_ivr_originate.c"),
        ("Caller-Context", rec.context), ("Caller-Channel-Name", ch.name),
        ("Caller-Profile-Index", "1"), ("Caller-Profile-Created-Time", created),
        ("Caller-Channel-Created-Time", created),
    ]
    builtin = {"direction": "outbound", "is_outbound": "true", "uuid": ch.uuid,
               "call_uuid": ch.uuid, "channel_name": ch.name}
    if rec.endpoint and rec.dialstring and ch.name.startswith("sofia/gateway/"):
        builtin["sip_gateway_name"] = rec.endpoint
    merged = dict(builtin)
    for key, value in rec.variables.items():
        merged.setdefault(key, value)
    ch.variables = merged


def timing_variables(ch: "Channel") -> Dict[str, str]:
    """The CDR-style stamps and durations CHANNEL_HANGUP_COMPLETE carries."""
    start, answer, end = ch.created, ch.answered_at, ch.ended_at or time.time()
    duration = end - start
    answersec = (answer - start) if answer is not None else 0.0
    billsec = ch.billsec
    billms = billsec * 1000 if answer is not None else 0
    out = {"start_stamp": local_stamp(start)}
    if answer is not None:
        out["answer_stamp"] = local_stamp(answer)
    out.update({
        "end_stamp": local_stamp(end),
        "start_epoch": str(int(start)), "start_uepoch": microseconds(start),
        "answer_epoch": str(int(answer)) if answer is not None else "0",
        "answer_uepoch": microseconds(answer),
        "end_epoch": str(int(end)), "end_uepoch": microseconds(end),
        "duration": str(int(duration)), "mduration": str(int(duration * 1000)),
        "billsec": str(billsec), "billmsec": str(billms),
        "progresssec": "0", "progressmsec": "0",
        "answersec": str(int(answersec)), "answermsec": str(int(answersec * 1000)),
        "waitsec": str(int(answersec)), "waitmsec": str(int(answersec * 1000)),
        "flow_billsec": str(int(duration)), "flow_billmsec": str(int(duration * 1000)),
    })
    return out
