"""Every option of the config file, declared once.

The INI loader, ``cti-dialer check-config``, the commented example in
``conf/cti-dialer.ini`` and the table in the docs all come from ``SETTINGS``;
a test checks that every default validates and that the example lists every
key, so the three cannot drift apart.
"""
import configparser
import dataclasses
import socket
import zoneinfo
from typing import Any, Callable, Dict, Optional, Tuple

from dateutil import tz as dateutil_tz


class SettingsError(ValueError):
    """The config file is unusable; the message names the section and key."""


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _port(text):
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be 1..65535")
    return value


def _name(text):
    # Host and domain end up in Redis key names and channel names; keep them
    # to characters that need no quoting anywhere.
    text = text.strip()
    if not text or any(c.isspace() or c in "@{}\"'\\" for c in text) or len(text) > 128:
        raise ValueError("must be 1..128 characters without spaces, '@', quotes or braces")
    return text


def _timezone(text):
    text = text.strip()
    if not text or text == "local":
        return dateutil_tz.tzlocal()
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone %r" % text) from exc


def _redis_url(text):
    text = text.strip()
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return text


def _sentinels(text):
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port[,host:port...], not %r" % item)
        out.append((host, int(port)))
    return tuple(out)


def _log_level(text):
    text = text.strip().upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return text


def _log_format(text):
    text = text.strip().lower()
    if text not in ("text", "json"):
        raise ValueError("must be text or json")
    return text


def _str(text):
    return text


def _machine_variables(text):
    """``name=VALUE, ...``: the channel variables (and values) by which the switch reports an answering machine."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value or not name or not all(c.isalnum() or c == "_" for c in name):
            raise ValueError("each item must be variable_name=VALUE (e.g. amd_result=MACHINE), not %r" % item)
        out.append((name, value.upper()))
    return tuple(out)


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def _listen(text):
    text = text.strip()
    if not text:
        return ""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port (or empty to turn metrics off)")
    return text


def _api_listen(text):
    text = text.strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be host:port (port 0: any free port, logged at start)")
    return text


API_READ_ONLY_PREFIX = "ro:"


def _api_tokens(text):
    """Comma-separated bearer tokens; ``ro:`` before one makes it read-only. Gives ((token, read_only), ...)."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        read_only = item.startswith(API_READ_ONLY_PREFIX)
        token = item[len(API_READ_ONLY_PREFIX):] if read_only else item
        # The reason never quotes the token: check-config output and logs are not secret.
        if len(token) < 16 or len(token) > 256 or not all(33 <= ord(c) < 127 and c != "," for c in token):
            raise ValueError("each token must be 16..256 printable ASCII characters without spaces or commas "
                             "(token #%d is not)" % (len(out) + 1))
        out.append((token, read_only))
    return tuple(out)


def default_host():
    return socket.gethostname().split(".")[0] or "localhost"


@dataclasses.dataclass(frozen=True)
class Setting:
    section: str
    key: str
    default: Any            # text as it would be written in the file, or a callable giving it
    validator: Callable[[str], Any]
    doc: str
    example: Optional[str] = None   # shown in conf/ instead of the default when the default is computed
    reloadable: bool = False        # taken from the file again on SIGHUP (systemctl reload)

    @property
    def name(self):
        return "%s.%s" % (self.section, self.key)

    def default_text(self):
        return self.default() if callable(self.default) else self.default


SETTINGS: Tuple[Setting, ...] = (
    Setting("dialer", "host", default_host, _name,
            "Names this daemon in @host keys and the config@<host> channel.",
            example="fs1"),
    Setting("dialer", "domain", "default", _name,
            "Tenant name used in @domain keys (lines, line groups, results)."),
    Setting("dialer", "timezone", "local", _timezone,
            "IANA zone for task times (start_time, work_hour, holiday); 'local' is the system zone.",
            example="Asia/Shanghai"),
    Setting("dialer", "reload_interval", "60", _positive_float,
            "Seconds between full rereads of tasks, lines and groups (pub/sub can drop messages).", reloadable=True),
    Setting("dialer", "idle_watchers", "256", _positive_int,
            "Most idle tasks whose queue is watched with a blocking Redis call (one connection each); "
            "the others are polled every idle_poll_interval.", reloadable=True),
    Setting("dialer", "idle_poll_interval", "0.01", _positive_float,
            "Seconds between looks at the queues of idle tasks without a watcher (one Redis call for all of them).",
            reloadable=True),
    Setting("dialer", "schedule_poll_interval", "0.2", _positive_float,
            "Seconds between looks for due members of the schedule set (each look costs O(log N)).", reloadable=True),
    Setting("dialer", "schedule_retry_delay", "60", _positive_float,
            "Seconds a due schedule member is pushed back when no line is free (the seed's now+60).", reloadable=True),
    Setting("dialer", "claim_batch", "50", _positive_int,
            "Most numbers one task claims from Redis in one round trip.", reloadable=True),
    Setting("dialer", "line_lease_ttl", "90", _positive_float,
            "Seconds a line slot stays reserved without renewal; a crashed daemon's slots free themselves after this.", reloadable=True),
    Setting("dialer", "job_timeout", "180", _positive_float,
            "Seconds to wait for an originate's BACKGROUND_JOB before asking FreeSWITCH whether the call exists.", reloadable=True),
    Setting("dialer", "failover_wait", "30", _positive_float,
            "Seconds a number that failed on one line group waits for a free line in the next groups before it ends with the route cause.", reloadable=True),
    Setting("dialer", "throttle_backoff", "1", _positive_float,
            "First pause after FreeSWITCH refuses an originate for capacity; doubles while refusals go on. "
            "Each refusal also halves the originate pace, which climbs back while originates are accepted; "
            "the pace never exceeds the switch's own sessions-per-second (read with api status).", reloadable=True),
    Setting("dialer", "throttle_backoff_max", "30", _positive_float,
            "Longest pause after repeated capacity refusals.", reloadable=True),
    Setting("dialer", "dedup_window", "86400", _positive_float,
            "Seconds during which a second number entry with the same params.id for the same task is a duplicate.", reloadable=True),
    Setting("dialer", "takeover_after", "300", _positive_float,
            "Seconds without a heartbeat after which another daemon settles a host's in-flight numbers.", reloadable=True),
    Setting("dialer", "drain_timeout", "5", _positive_float,
            "Seconds a graceful stop waits for pending Redis writes before exiting.", reloadable=True),
    Setting("dialer", "result_channel", "", _str,
            "Pub/sub channel on which every result is also PUBLISHed at once, as a JSON object of the stream "
            "entry's fields, for a dashboard or CRM without a consumer group. Empty: no PUBLISH. The stream "
            "stays the durable record: a subscriber that is away misses what is published meanwhile.",
            reloadable=True),
    Setting("dialer", "state_dir", "", _str,
            "Directory for the local journal of results and requeues that could not reach Redis before a "
            "stop (written with fsync, replayed at the next start). Empty: $STATE_DIRECTORY when systemd "
            "sets it (StateDirectory=), else no journal (such results are then settled as UNKNOWN)."),
    Setting("dialer", "machine_variables", "amd_result=MACHINE, avmd_detect=TRUE", _machine_variables,
            "Channel variables by which the switch reports an answering machine on an answered call "
            "(name=VALUE, comma separated; values compared without case), as set by mod_amd or mod_avmd. "
            "Such a call ends in outcome class 'machine': counted apart from live answers, redialed by the "
            "task's 'machine' rule, never a live answer for the abandon rate. Empty: no detection."),
    Setting("dialer", "daily_attempt_cap", "0", _non_negative_int,
            "Most attempts per number per day across every task and schedule config of the domain, counted "
            "in Redis by every host (a day in [dialer] timezone). A number over it waits in Redis for the next "
            "day. Failover and throttle re-sends are tries of one attempt and do not count. 0: no cap. Give "
            "every daemon of a domain the same value.", reloadable=True),
    Setting("dialer", "result_maxlen", "1000000", _positive_int,
            "Approximate cap on entries kept in the results stream.", reloadable=True),
    Setting("dialer", "rejected_maxlen", "100000", _positive_int,
            "Approximate cap on entries kept in the rejected stream.", reloadable=True),
    Setting("redis", "url", "redis://127.0.0.1:6379/0", _redis_url,
            "Redis to read tasks from and write results to."),
    Setting("redis", "sentinels", "", _sentinels,
            "Redis Sentinel addresses (host:port, comma separated); when set, the master of sentinel_service "
            "is used and url only supplies the password and database number.",
            example="10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379"),
    Setting("redis", "sentinel_service", "mymaster", _str,
            "The Sentinel service (master) name."),
    Setting("redis", "sentinel_password", "", _str,
            "Password of the Sentinels themselves, if they require one (never logged)."),
    Setting("redis", "socket_timeout", "5", _positive_float,
            "Seconds a Redis command may take before the connection is considered broken."),
    Setting("esl", "host", "127.0.0.1", _str,
            "FreeSWITCH event socket address."),
    Setting("esl", "port", "8021", _port,
            "FreeSWITCH event socket port."),
    Setting("esl", "password", "ClueCon", _str,
            "Event socket password; lives only here, never in Redis, never logged."),
    Setting("esl", "connect_timeout", "5", _positive_float,
            "Seconds to connect, receive the greeting and authenticate.", reloadable=True),
    Setting("esl", "command_timeout", "10", _positive_float,
            "Seconds to wait for a reply to any ESL command; past it the connection is dropped and rebuilt.", reloadable=True),
    Setting("esl", "keepalive", "5", _positive_float,
            "Seconds of silence from FreeSWITCH after which a probe command is sent; no answer within "
            "command_timeout drops the connection.", reloadable=True),
    Setting("esl", "reconnect_max", "30", _positive_float,
            "Longest pause between ESL reconnect attempts (backoff doubles from 0.5 s).", reloadable=True),
    Setting("metrics", "listen", "", _listen,
            "host:port of the Prometheus endpoint (/metrics); empty turns it off.",
            example="127.0.0.1:9360"),
    Setting("api", "listen", "127.0.0.1:6188", _api_listen,
            "host:port the HTTP API (cti-dialer api) listens on."),
    Setting("api", "tokens", "", _api_tokens,
            "Bearer tokens the HTTP API accepts, comma separated, each 16..256 printable characters; "
            "'ro:' before a token makes it read-only (GET only). Empty: every request but /healthz gets 401. "
            "Lives only here, never in Redis, never logged."),
    Setting("api", "max_body", "16777216", _positive_int,
            "Largest request body in bytes; a larger one gets 413 before it is read."),
    Setting("api", "max_batch", "50000", _positive_int,
            "Most numbers in one batch (JSON array or CSV upload) added to a queue."),
    Setting("api", "idempotence_ttl", "86400", _positive_int,
            "Seconds an Idempotence-Key is remembered (with the first response, in Redis, for every API process)."),
    Setting("api", "connections", "1000", _positive_int,
            "Most HTTP connections served at once (live result feeds included); more wait to be accepted."),
    Setting("api", "keepalive", "15", _positive_float,
            "Seconds between keepalive comments on the live result feed."),
    Setting("log", "level", "INFO", _log_level,
            "DEBUG, INFO, WARNING or ERROR.", reloadable=True),
    Setting("log", "format", "text", _log_format,
            "text for people, json for log collectors.", reloadable=True),
)

_BY_NAME: Dict[Tuple[str, str], Setting] = {(s.section, s.key): s for s in SETTINGS}


class Config:
    """Validated settings; read with ``config.get("dialer", "host")`` or ``config.dialer_host``."""

    def __init__(self, values):
        self._values = dict(values)

    def get(self, section, key):
        return self._values[(section, key)]

    def __getattr__(self, attr):
        section, _, key = attr.partition("_")
        try:
            return self._values[(section, key)]
        except KeyError:
            raise AttributeError(attr) from None

    def items(self):
        return self._values.items()

    def update_reloadable(self, other):
        """Take the reloadable settings from ``other``; return (changed, needing a restart)."""
        changed, restart = [], []
        for setting in SETTINGS:
            key = (setting.section, setting.key)
            if self._values[key] == other._values[key]:
                continue
            if setting.reloadable:
                self._values[key] = other._values[key]
                changed.append(setting.name)
            else:
                restart.append(setting.name)
        return changed, restart


def load(path=None, text=None):
    """Read an INI file (or text); every key optional; unknown keys are errors."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    try:
        if text is not None:
            parser.read_string(text, source=path or "<config>")
        elif path is not None:
            with open(path, encoding="utf-8") as fh:
                parser.read_file(fh)
    except (OSError, configparser.Error) as exc:
        raise SettingsError("cannot read config %s: %s" % (path, exc)) from exc
    for section in parser.sections():
        for key in parser[section]:
            if (section, key) not in _BY_NAME:
                raise SettingsError("unknown setting [%s] %s" % (section, key))
    values = {}
    for setting in SETTINGS:
        raw = parser.get(setting.section, setting.key, fallback=None)
        source = "file" if raw is not None else "default"
        if raw is None:
            raw = setting.default_text()
        try:
            values[(setting.section, setting.key)] = setting.validator(raw)
        except ValueError as exc:
            raise SettingsError("[%s] %s = %r (%s): %s" % (
                setting.section, setting.key, raw, source, exc)) from exc
    return Config(values)


def render_example():
    """The commented example config, generated from SETTINGS."""
    lines = ["; cti-dialer configuration. Every key is optional; the value shown is",
             "; the built-in default unless noted. Generated from cti_dialer/settings.py.",
             ""]
    section = None
    for setting in SETTINGS:
        if setting.section != section:
            if section is not None:
                lines.append("")
            lines.append("[%s]" % setting.section)
            section = setting.section
        lines.append("; %s%s" % (setting.doc, " (reloaded on SIGHUP)" if setting.reloadable else ""))
        if setting.example is not None:
            lines.append("; default: %s" % {
                "host": "computed (the machine's short host name)",
                "timezone": "computed (the system's local zone)",
                "sentinels": "none (connect to url directly)",
                "listen": "empty (no metrics endpoint)"}.get(setting.key, "computed at start"))
            lines.append(";%s = %s" % (setting.key, setting.example))
        else:
            lines.append(";%s = %s" % (setting.key, setting.default_text()))
    return "\n".join(lines) + "\n"


def render_rst():
    """docs/configuration.rst, generated from SETTINGS."""
    out = ["Configuration reference", "=======================", "",
           ".. Generated from cti_dialer/settings.py by ``cti-dialer settings-doc``; do not edit.", "",
           "The daemon reads one INI file (``cti-dialer run -c FILE`` or ``CTI_DIALER_CONFIG=FILE``).",
           "Every key is optional; an unknown key or an invalid value stops the daemon at start",
           "with a message naming the section and key. ``cti-dialer check-config -c FILE`` prints",
           "the effective values. ``conf/cti-dialer.ini`` is a commented example of every key.",
           "Keys marked *Reloaded on SIGHUP* change in a running daemon on ``systemctl reload``",
           "(``kill -HUP``); others need a restart, and the daemon logs which ones.", ""]
    section = None
    for setting in SETTINGS:
        if setting.section != section:
            section = setting.section
            title = "[%s]" % section
            out += [title, "-" * len(title), ""]
        default = setting.default_text() if setting.example is None else {
            "host": "the machine's short host name", "timezone": "the system's local zone",
            "sentinels": "none (connect to url directly)", "listen": "empty (no metrics endpoint)"}[setting.key]
        reload_note = " Reloaded on SIGHUP." if setting.reloadable else ""
        out += ["``%s``" % setting.key, "    %s Default: ``%s``.%s" % (setting.doc, default, reload_note)
                if setting.example is None else "    %s Default: %s.%s" % (setting.doc, default, reload_note), ""]
    return "\n".join(out)
