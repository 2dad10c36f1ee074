"""The API commands the simulator knows, answering as FreeSWITCH's mod_commands does
(and ``callcenter_config`` as mod_callcenter does, see ``callcenter``)."""
import time
from typing import Callable, Optional

from .events import Q850, caller_id, local_stamp
from .originate import separate_string
from .switch import DEFAULT_MAX_SESSIONS, DEFAULT_SPS, Channel, Job, Switch

VERSION = "1.10.12-release+fsim 64bit"

SHOW_CHANNELS_HEADER = (
    "uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,"
    "application_data,dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,"
    "write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate,callee_name,"
    "callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name,"
    "initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context")

SHOW_USAGE = ("-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|"
              "channels [count|like <match string>]|calls|detailed_calls|bridged_calls|"
              "detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|"
              "interfaces|interface_types|tasks|limits|status\n")

_CAUSE_BY_CODE = {v: k for k, v in Q850.items()}

CTL_SYNTAX = ("[recover|send_sighup|hupall|pause [inbound|outbound]|resume [inbound|outbound]|"
              "shutdown [cancel|elegant|asap|now|restart]|sps|sync_clock|sync_clock_when_idle|reclaim_mem|"
              "max_sessions|min_dtmf_duration [num]|max_dtmf_duration [num]|default_dtmf_duration [num]|"
              "min_idle_cpu|loglevel [level]|debug_level [level]]")


def _atoi(text: str) -> int:
    digits = len(text) - len(text.lstrip("0123456789"))
    return int(text[:digits]) if digits else 0


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def cause_from_arg(text: Optional[str], default: str) -> str:
    """A hangup cause given by name or Q.850 code; anything unusable means ``default``."""
    if not text:
        return default
    if text.isdigit():
        return _CAUSE_BY_CODE.get(int(text), default)
    upper = text.upper()
    if all(c.isalnum() or c == "_" for c in upper) and upper.isascii():
        return upper
    return default


class ApiCommands:
    def __init__(self, switch: Switch, shutdown: Callable[[], None]):
        self._switch = switch
        self._shutdown = shutdown    # stops the switch once the reply is on its way

    def run(self, job: Job, conn_id: int, raw: str) -> Optional[str]:
        """The command's output, or None when the switch delivers it later."""
        name, arg = job.command, job.arg
        lname = name.lower()
        if lname == "originate":
            return self._switch.originate(conn_id, arg, job, raw)
        if lname == "uuid_exists":
            return "true" if arg and arg in self._switch.channels else "false"
        if lname == "uuid_kill":
            return self._uuid_kill(arg)
        if lname == "status":
            return self._status()
        if lname == "show":
            return self._show(arg)
        if lname == "hupall":
            argv = separate_string(arg or "", " ")
            cause = cause_from_arg(argv[0] if argv else None, "MANAGER_REQUEST")
            self._switch.hangup_all(cause)
            return "+OK hangup all channels with cause %s\n" % cause
        if lname == "shutdown":
            self._shutdown()
            return "+OK\n"
        if lname == "fsctl":
            return self._fsctl(arg)
        if lname == "version":
            return "FreeSWITCH Version %s (fsim)\n" % VERSION
        if lname == "hostname":
            return self._switch.hostname
        if lname == "callcenter_config" and self._switch.callcenter is not None:
            return self._switch.callcenter.api(arg)
        return "-ERR %s Command not found!\n" % name

    def _uuid_kill(self, arg: Optional[str]) -> str:
        argv = separate_string(arg or "", " ")
        if not argv:
            return "-USAGE: <uuid> [cause]\n"
        ch = self._switch.channels.get(argv[0])
        if ch is None:
            return "-ERR No such channel!\n"
        self._switch.hangup(ch, cause_from_arg(argv[1] if len(argv) > 1 else None, "NORMAL_CLEARING"))
        return "+OK\n"

    def _fsctl(self, arg: Optional[str]) -> str:
        switch = self._switch
        argv = separate_string(arg or "", " ")
        if not argv:
            return "-USAGE: %s\n" % CTL_SYNTAX
        sub = argv[0].lower()
        value = _atoi(argv[1]) if len(argv) > 1 else 0
        if sub == "shutdown":
            if "cancel" not in (a.lower() for a in argv[1:]):
                self._shutdown()
            return "+OK\n"
        if sub == "hupall":
            switch.hangup_all("MANAGER_REQUEST")
            return "+OK\n"
        if sub == "sps":
            if value > 0:
                switch.sps = value
            return "+OK sessions per second: %d\n" % self._sps_max()
        if sub == "max_sessions":
            if value > 0:
                switch.max_sessions = value
            return "+OK max sessions: %d\n" % self._max_sessions()
        if sub == "last_sps":
            return "+OK last sessions per second: %d\n" % switch.sps_stats()[0]
        return "-ERR INVALID COMMAND\nUSAGE: fsctl %s" % CTL_SYNTAX

    def _sps_max(self) -> int:
        return self._switch.sps if self._switch.sps is not None else DEFAULT_SPS

    def _max_sessions(self) -> int:
        return self._switch.max_sessions if self._switch.max_sessions is not None else DEFAULT_MAX_SESSIONS

    def _status(self) -> str:
        switch = self._switch
        up = max(0.0, time.time() - switch.started_at)
        secs = int(up)
        days, rem = divmod(secs, 86400)
        years, days = divmod(days, 365)
        hours, rem = divmod(rem, 3600)
        minutes, seconds = divmod(rem, 60)
        frac = int((up - secs) * 1_000_000)
        last_sps, sps_peak, sps_recent = switch.sps_stats()
        uptime = ", ".join(_plural(n, w) for n, w in (
            (years, "year"), (days, "day"), (hours, "hour"), (minutes, "minute"), (seconds, "second"),
            (frac // 1000, "millisecond"), (frac % 1000, "microsecond")))
        return ("UP %s\n"
                "FreeSWITCH (Version %s) is ready\n"
                "%d session(s) since startup\n"
                "%d session(s) - peak %d, last 5min %d \n"
                "%d session(s) per Sec out of max %d, peak %d, last 5min %d \n"
                "%d session(s) max\n"
                "min idle cpu 0.00/100.00\n"
                "Current Stack Size/Max 240K/8192K\n"
                % (uptime, VERSION, switch.sessions_total, len(switch.channels), switch.peak,
                   switch.sessions_peak_5min(), last_sps, self._sps_max(), sps_peak, sps_recent,
                   self._max_sessions()))

    def _show(self, arg: Optional[str]) -> str:
        argv = separate_string(arg or "", " ")
        if not argv or argv[0].lower() != "channels":
            return SHOW_USAGE
        channels = list(self._switch.channels.values())
        if len(argv) > 1 and argv[1].lower() == "count":
            return "\n%d total.\n" % len(channels)
        if not channels:
            return "\n0 total.\n"
        rows = [SHOW_CHANNELS_HEADER]
        for ch in channels:
            rows.append(self._show_row(ch))
        return "\n".join(rows) + "\n\n%d total.\n" % len(channels)

    def _show_row(self, ch: Channel) -> str:
        rec = ch.rec
        app, app_data = "", ""
        if rec.extension.startswith("&"):
            app, _, app_data = rec.extension[1:].partition("(")
            app_data = app_data[:-1] if app_data.endswith(")") else app_data
        answered = ch.answered_at is not None
        cid_name, cid_num = caller_id(rec)
        codec = ("PCMA", "8000", "64000") if answered else ("", "", "")
        created = ch.created // 1_000_000
        fields = [
            ch.uuid, "inbound" if ch.leg == "b" else "outbound", local_stamp(created),
            str(created), ch.name, "CS_CONSUME_MEDIA" if answered else "CS_EXECUTE",
            cid_name, cid_num, "", rec.number, app, app_data, rec.dialplan, rec.context,
            codec[0], codec[1], codec[2], codec[0], codec[1], codec[2], "", self._switch.hostname, "", "",
            "", "ACTIVE" if answered else "RINGING", "Outbound Call", rec.number, "SEND", ch.uuid,
            "", "", cid_name, cid_num, "", rec.number, rec.dialplan, rec.context,
        ]
        return ",".join(fields)
