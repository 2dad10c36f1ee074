"""The headers and bodies of the events the simulated switch fires.

Each ``*_event`` method is a builder for ``Connections.emit``: it is called
only when some client listens, with the event name and sequence number
first, and returns ``(headers, body)`` for the wire encoders.

Header names, their order and the channel variables follow the captures of
a real FreeSWITCH 1.11 (shared/freeswitch-captures): a benchmark nobody
subscribes to never pays for any of it.
"""
import email.utils
import time
import uuid as uuidlib
from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:
    from .switch import Channel, Job, OriginateRecord, Switch

Headers = List[Tuple[str, str]]

# switch_call_cause_t of switch_types.h: the cause names and their numbers.
Q850 = {
    "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3,
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "NUMBER_CHANGED": 22,
    "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29,
    "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42, "REQUESTED_CHAN_UNAVAIL": 44,
    "OUTGOING_CALL_BARRED": 52, "INCOMING_CALL_BARRED": 54,
    "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63, "INCOMPATIBLE_DESTINATION": 88,
    "RECOVERY_ON_TIMER_EXPIRE": 102, "PROTOCOL_ERROR": 111, "INTERWORKING": 127,
    "ORIGINATOR_CANCEL": 487, "MANAGER_REQUEST": 503, "ALLOTTED_TIMEOUT": 602,
    "MEDIA_TIMEOUT": 604, "GATEWAY_DOWN": 609, "INVALID_GATEWAY": 608,
}
# Causes the switch sets itself keep the channel's last Q.850 code (captured: 16).
_Q850_KEPT = {"SYSTEM_SHUTDOWN": 16}

# The final SIP response that goes with a cause when the far end refuses an
# INVITE: mod_sofia's hangup_cause_to_sip (RFC 4497 / RFC 3398), except
# RECOVERY_ON_TIMER_EXPIRE, which an outbound leg gets from sofia-sip's own
# 408 when the far end never answers the INVITE (sofia_glue_sip_cause_to_freeswitch).
# A cause with no entry reports no sip_term_status: mod_sofia's fallback of
# 480 is what it sends, not what a far end is known to have sent.
SIP_STATUS = {
    "UNALLOCATED_NUMBER": 404, "NO_ROUTE_TRANSIT_NET": 404, "NO_ROUTE_DESTINATION": 404,
    "USER_BUSY": 486, "NO_USER_RESPONSE": 408, "NO_ANSWER": 480, "SUBSCRIBER_ABSENT": 480,
    "CALL_REJECTED": 603, "NUMBER_CHANGED": 410, "DESTINATION_OUT_OF_ORDER": 502,
    "INVALID_NUMBER_FORMAT": 484, "FACILITY_REJECTED": 501, "NORMAL_UNSPECIFIED": 480,
    "REQUESTED_CHAN_UNAVAIL": 503, "NORMAL_CIRCUIT_CONGESTION": 503, "NETWORK_OUT_OF_ORDER": 503,
    "NORMAL_TEMPORARY_FAILURE": 503, "SWITCH_CONGESTION": 503, "OUTGOING_CALL_BARRED": 403,
    "INCOMING_CALL_BARRED": 403, "BEARERCAPABILITY_NOTAVAIL": 503, "INCOMPATIBLE_DESTINATION": 488,
    "RECOVERY_ON_TIMER_EXPIRE": 408, "ORIGINATOR_CANCEL": 487,
}
# The far end's BYE of an answered call: sofia records the 200 it answers with.
BYE_STATUS = 200

# (file, function, line) FreeSWITCH 1.11 reports as the origin of each event.
_CALLING = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "626"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3848"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3488"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", "943"),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1580"),
    "SHUTDOWN": ("switch_core.c", "switch_core_destroy", "3033"),
}

# Channel-State / Channel-Call-State / Channel-State-Number / Answer-State,
# for the outbound (A) leg and for the inbound B leg of a two-leg endpoint.
_STATES = {
    "CHANNEL_CREATE": (("CS_INIT", "DOWN", "2", "ringing"), ("CS_INIT", "DOWN", "2", "ringing")),
    "CHANNEL_ANSWER": (("CS_CONSUME_MEDIA", "DOWN", "7", "answered"), ("CS_EXECUTE", "RINGING", "4", "answered")),
    "CHANNEL_HANGUP": (("CS_HANGUP", "HANGUP", "10", "hangup"), ("CS_HANGUP", "HANGUP", "10", "hangup")),
    "CHANNEL_HANGUP_COMPLETE": (("CS_REPORTING", "HANGUP", "11", "hangup"),
                                ("CS_REPORTING", "HANGUP", "11", "hangup")),
}

# Endpoints of mod_loopback run the L16 codec from the start.
_L16 = (("Channel-Read-Codec-Name", "L16"), ("Channel-Read-Codec-Rate", "8000"),
        ("Channel-Read-Codec-Bit-Rate", "128000"), ("Channel-Write-Codec-Name", "L16"),
        ("Channel-Write-Codec-Rate", "8000"), ("Channel-Write-Codec-Bit-Rate", "128000"))
_L16_VARIABLES = (("read_codec", "L16"), ("read_rate", "8000"), ("write_codec", "L16"), ("write_rate", "8000"))
LOOPBACK_FAMILY = ("loopback", "null")

DEFAULT_CID_NUMBER = "0000000000"
CALLEE_NAME = "Outbound Call"


def microseconds(us: Optional[int]) -> str:
    """A switch time as its *-Time and *_uepoch values: "0" when it never happened."""
    return str(us) if us else "0"


def local_stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def caller_id(rec: "OriginateRecord") -> Tuple[str, str]:
    """The caller id name ("" when none was given) and number the outbound leg presents."""
    name = rec.variables.get("origination_caller_id_name") or rec.cid_name or ""
    num = rec.variables.get("origination_caller_id_number") or rec.cid_num or DEFAULT_CID_NUMBER
    return name, num


def q850(cause: str) -> str:
    # switch_channel_cause_q850(): a cause above 127 (FreeSWITCH's own, such
    # as ORIGINATOR_CANCEL 487 or GATEWAY_DOWN 609) is reported as 16.
    number = _Q850_KEPT.get(cause) or Q850.get(cause, 31)
    return str(number if number <= 127 else 16)


class EventRenderer:
    """Event headers as one switch (its identity read from ``switch``) sends them."""

    def __init__(self, switch: "Switch"):
        self._switch = switch
        # Events come in bursts within one second: format its dates once.
        self._date_cache = (0, "", "")

    def _dates(self, sec: int) -> Tuple[str, str]:
        cached = self._date_cache
        if cached[0] != sec:
            cached = (sec, local_stamp(sec), email.utils.formatdate(sec, usegmt=True))
            self._date_cache = cached
        return cached[1], cached[2]

    def _base_headers(self, name: str, seq: int) -> Headers:
        switch = self._switch
        now = switch.clock.now_us()
        local, gmt = self._dates(now // 1_000_000)
        cfile, cfunc, cline = _CALLING.get(name, ("switch_event.c", "switch_event_fire", "1"))
        ipv4 = switch.host if switch.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return [
            ("Event-Name", name), ("Core-UUID", switch.core_uuid),
            ("FreeSWITCH-Hostname", switch.hostname), ("FreeSWITCH-Switchname", switch.hostname),
            ("FreeSWITCH-IPv4", ipv4), ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", local), ("Event-Date-GMT", gmt),
            ("Event-Date-Timestamp", str(now)),
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

    def shutdown_event(self, name: str, seq: int) -> Tuple[Headers, None]:
        headers = self._base_headers(name, seq)
        headers.append(("Event-Info", "System Shutting Down"))
        return headers, None

    def channel_event(self, name: str, seq: int, ch: "Channel") -> Tuple[Headers, None]:
        headers = self._base_headers(name, seq)
        if name == "CHANNEL_HANGUP_COMPLETE":
            headers.append(("Hangup-Cause", ch.cause))
        headers += self._channel_data(name, ch, _STATES[name][ch.leg == "b"],
                                      ch.transferred_at is not None and name == "CHANNEL_HANGUP_COMPLETE")
        return headers, None

    def custom_event(self, name: str, seq: int, subclass: str, calling: Tuple[str, str, str],
                     fields: Headers, ch: Optional["Channel"] = None) -> Tuple[Headers, None]:
        """A CUSTOM event as a module fires it: the core's headers, ``Event-Subclass``,
        the channel's data when the module adds it, then the module's own headers."""
        headers = self._base_headers(name, seq)
        headers[9:12] = [("Event-Calling-File", calling[0]), ("Event-Calling-Function", calling[1]),
                         ("Event-Calling-Line-Number", calling[2])]
        headers.append(("Event-Subclass", subclass))
        if ch is not None:
            # An application's channel is executing its dialplan: the transferred profile.
            if ch.ended_at is not None:
                states = ("CS_EXECUTE", "HANGUP", "4", "hangup")
            else:
                states = ("CS_EXECUTE", "ACTIVE", "4", "answered")
            headers += self._channel_data(name, ch, states, ch.transferred_at is not None)
        headers += fields
        return headers, None

    def _channel_data(self, name: str, ch: "Channel", states: Tuple[str, str, str, str],
                      transferred: bool) -> Headers:
        b_leg = ch.leg == "b"
        state, call_state, state_no, answer_state = states
        if name == "CHANNEL_CREATE" and ch.leg == "a" and ch.peer is None:
            state_no = "1"          # captured: the A leg whose B leg was never created
        hangup = name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")
        headers: Headers = [
            ("Channel-State", state), ("Channel-Call-State", call_state),
            ("Channel-State-Number", state_no), ("Channel-Name", ch.name),
            ("Unique-ID", ch.uuid), ("Call-Direction", "inbound" if b_leg else "outbound"),
            ("Presence-Call-Direction", "inbound" if b_leg else "outbound"),
            ("Channel-HIT-Dialplan", "true" if b_leg or transferred else "false"),
            ("Channel-Call-UUID", ch.uuid), ("Answer-State", answer_state),
        ]
        if hangup:
            # Reported twice in CHANNEL_HANGUP_COMPLETE: once by the reporting
            # state, once with the channel's own data.
            headers.append(("Hangup-Cause", ch.cause))
        if ch.family in LOOPBACK_FAMILY:
            headers += _L16
        headers += _profile(ch, transferred)
        headers += [
            ("Caller-Channel-Created-Time", microseconds(ch.created)),
            ("Caller-Channel-Answered-Time", microseconds(ch.answered_at)),
            ("Caller-Channel-Progress-Time", "0"), ("Caller-Channel-Progress-Media-Time", "0"),
            ("Caller-Channel-Hangup-Time", microseconds(ch.ended_at if hangup else None)),
            ("Caller-Channel-Transfer-Time", "0"), ("Caller-Channel-Resurrect-Time", "0"),
            ("Caller-Channel-Bridged-Time", "0"), ("Caller-Channel-Last-Hold", "0"),
            ("Caller-Channel-Hold-Accum", "0"), ("Caller-Screen-Bit", "true"),
            ("Caller-Privacy-Hide-Name", "false"), ("Caller-Privacy-Hide-Number", "false"),
        ]
        headers += [("variable_" + k, v) for k, v in _variables(ch, name, transferred)]
        return headers


def _profile(ch: "Channel", transferred: bool) -> Headers:
    """The caller profile; after the originate's transfer to its extension, the new one."""
    rec = ch.rec
    cid_name, cid_num = caller_id(rec)
    loopback = ch.family in LOOPBACK_FAMILY
    source = "mod_loopback" if loopback else "src/switch_ivr_originate.c"
    out: Headers = [("Caller-Direction", "inbound" if ch.leg == "b" else "outbound"),
                    ("Caller-Logical-Direction", "inbound" if ch.leg == "b" else "outbound")]
    if transferred:
        # The transfer flips the ids: the callee becomes the caller.
        out += [("Caller-Dialplan", rec.dialplan), ("Caller-Caller-ID-Name", CALLEE_NAME),
                ("Caller-Caller-ID-Number", rec.number)]
        if cid_name:
            out.append(("Caller-Orig-Caller-ID-Name", cid_name))
        out.append(("Caller-Orig-Caller-ID-Number", cid_num))
        if cid_name:
            out.append(("Caller-Callee-ID-Name", cid_name))
        out += [("Caller-Callee-ID-Number", cid_num), ("Caller-ANI", cid_num),
                ("Caller-Destination-Number", rec.extension), ("Caller-Unique-ID", ch.uuid),
                ("Caller-Source", source), ("Caller-Transfer-Source", transfer_source(ch)),
                ("Caller-Context", rec.context), ("Caller-RDNIS", rec.number),
                ("Caller-Channel-Name", ch.name), ("Caller-Profile-Index", "2"),
                ("Caller-Profile-Created-Time", microseconds(ch.transferred_at))]
        return out
    if ch.family == "loopback":
        out.append(("Caller-Dialplan", "xml"))
    elif not loopback:
        out.append(("Caller-Dialplan", rec.dialplan))
    if cid_name:
        out.append(("Caller-Caller-ID-Name", cid_name))
    out.append(("Caller-Caller-ID-Number", cid_num))
    if cid_name:
        out.append(("Caller-Orig-Caller-ID-Name", cid_name))
    out += [("Caller-Orig-Caller-ID-Number", cid_num),
            ("Caller-Callee-ID-Name", CALLEE_NAME), ("Caller-Callee-ID-Number", rec.number),
            ("Caller-ANI", cid_num), ("Caller-Destination-Number", rec.number),
            ("Caller-Unique-ID", ch.uuid), ("Caller-Source", source),
            ("Caller-Context", "default" if loopback else rec.context), ("Caller-Channel-Name", ch.name),
            ("Caller-Profile-Index", "1"), ("Caller-Profile-Created-Time", microseconds(ch.created))]
    return out


def transfer_source(ch: "Channel") -> str:
    rec = ch.rec
    if ch.transfer_id is None:
        ch.transfer_id = str(uuidlib.uuid4())
    return "%d:%s:bl_xfer:%s/%s/%s" % (ch.transferred_at // 1_000_000, ch.transfer_id, rec.extension,
                                       rec.context, rec.dialplan)


def _variables(ch: "Channel", name: str, transferred: bool) -> List[Tuple[str, str]]:
    """The channel variables, in the order the switch set them (a variable set again moves last)."""
    rec = ch.rec
    loopback = ch.family in LOOPBACK_FAMILY
    created = name == "CHANNEL_CREATE"
    if ch.leg == "b":
        out = [("direction", "inbound"), ("uuid", ch.uuid)]
        if created:
            out.append(("call_uuid", ch.uuid))
        out += [("session_id", str(ch.session_id)), ("channel_name", ch.name)]
        out += _L16_VARIABLES
        out += rec.variables.items()
        out += [("other_loopback_leg_uuid", ch.peer_uuid), ("loopback_leg", "B")]
        if not created:
            # Set again when the B leg enters the dialplan.
            out.append(("call_uuid", ch.uuid))
    else:
        out = [("direction", "outbound"), ("is_outbound", "true"), ("session_id", str(ch.session_id))]
        if loopback:
            out += _L16_VARIABLES
        out += [("channel_name", ch.name), ("uuid", ch.uuid)]
        if not transferred:
            out.append(("call_uuid", ch.uuid))
        out += rec.variables.items()
        out += [("originate_early_media", "false" if rec.enterprise else "true"),
                ("originate_endpoint", rec.dialed.partition("/")[0])]
        if rec.dialstring and ch.name.startswith("sofia/gateway/"):
            out.append(("sip_gateway_name", rec.endpoint))
        if ch.leg == "a" and ch.peer_uuid:
            out += [("other_loopback_leg_uuid", ch.peer_uuid), ("loopback_leg", "A")]
    if ch.answered_at is not None and not created and name != "CHANNEL_ANSWER":
        out.append(("endpoint_disposition", "ANSWER"))
    if transferred:
        source = transfer_source(ch)
        out += [("max_forwards", "70"), ("transfer_history", source), ("transfer_source", source),
                ("pre_transfer_caller_id_number", caller_id(rec)[1]), ("channel_cid_flipped", "yes"),
                ("call_uuid", ch.uuid)]
    if ch.set_vars and name not in ("CHANNEL_CREATE", "CHANNEL_ANSWER"):
        out += ch.set_vars
    if name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
        # mod_sofia sets these only when the far end ended the call (its
        # refusal or BYE), just before it hangs the channel up; a hangup the
        # switch starts itself (timeout, uuid_kill) leaves them unset.
        if ch.sip_status is not None and ch.name.startswith("sofia/"):
            out.append(("sip_term_status", str(ch.sip_status)))
            if ch.cause in Q850:
                out.append(("sip_term_cause", str(Q850[ch.cause])))
        out += [("hangup_cause", ch.cause), ("hangup_cause_q850", q850(ch.cause))]
    if name == "CHANNEL_HANGUP_COMPLETE":
        out += _cdr_variables(ch, transferred)
        if ch.family == "loopback":
            out.append(("is_loopback", "1"))
    return out


def _cdr_variables(ch: "Channel", transferred: bool) -> List[Tuple[str, str]]:
    """The stamps and durations CHANNEL_HANGUP_COMPLETE carries, from the switch's clock."""
    start, answer, end = ch.created, ch.answered_at, ch.ended_at or ch.created
    profile = ch.transferred_at if transferred else start
    answered = answer is not None
    out = [("digits_dialed", "none"), ("start_stamp", local_stamp(start // 1_000_000)),
           ("profile_start_stamp", local_stamp(profile // 1_000_000))]
    if answered:
        out.append(("answer_stamp", local_stamp(answer // 1_000_000)))
    out.append(("end_stamp", local_stamp(end // 1_000_000)))
    for key, us in (("start", start), ("profile_start", profile), ("answer", answer)):
        out += [(key + "_epoch", str(us // 1_000_000) if us else "0"), (key + "_uepoch", microseconds(us))]
    out += [("bridge_epoch", "0"), ("bridge_uepoch", "0"), ("last_hold_epoch", "0"),
            ("last_hold_uepoch", "0"), ("hold_accum_seconds", "0"), ("hold_accum_usec", "0"),
            ("hold_accum_ms", "0"), ("resurrect_epoch", "0"), ("resurrect_uepoch", "0"),
            ("progress_epoch", "0"), ("progress_uepoch", "0"), ("progress_media_epoch", "0"),
            ("progress_media_uepoch", "0"), ("end_epoch", str(end // 1_000_000)),
            ("end_uepoch", microseconds(end))]
    cid_name, cid_num = caller_id(ch.rec)
    if transferred:
        cid_name, cid_num = CALLEE_NAME, ch.rec.number
    out.append(("caller_id", '"%s" <%s>' % (cid_name, cid_num) if cid_name else cid_num))
    # Each unit is the difference of the two times truncated to that unit,
    # as the switch computes it: 1.1 s of talk can bill 2 seconds.
    zero = (0, 0)
    spans = (("duration", (start, end)), ("bill", (answer, end) if answered else zero),
             ("progress", zero), ("answer", (start, answer) if answered else zero),
             ("wait", (start, answer) if answered else zero), ("progress_media", zero),
             ("flow_bill", (start, end)))
    for unit, size in (("sec", 1_000_000), ("msec", 1000), ("usec", 1)):
        out += [(_span_name(key, unit), str(b // size - a // size)) for key, (a, b) in spans]
    return out


def billsec(ch: "Channel") -> int:
    if ch.answered_at is None or ch.ended_at is None:
        return 0
    return ch.ended_at // 1_000_000 - ch.answered_at // 1_000_000


def _span_name(key: str, unit: str) -> str:
    if key == "duration":
        return {"sec": "duration", "msec": "mduration", "usec": "uduration"}[unit]
    return key + unit
