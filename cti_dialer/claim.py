"""A number this host took from Redis, and its in-flight record: the one encoder and decoder.

The in-flight record (``cti_dialer_inflight@<host>``, claim id -> JSON) is
what survives a crash: ``Claim.to_record`` writes it, ``Claim.from_record``
reads it back, and the Lua scripts that create records at claim time write
a subset of the same fields (``scripts.py``; the store contract tests check
that the two agree). The state field is ``lifecycle.ClaimState``'s value.
No I/O here.
"""
import dataclasses
import enum
from typing import Any, Dict, Optional

from . import lifecycle, model
from .lifecycle import ClaimEvent, ClaimState
from .outcome import Attempt

# Per-task counters of schedule configs live in their own namespace, so a
# task and a schedule config of the same name never share counters.
SCHEDULE_PREFIX = "schedule:"


class Kind(str, enum.Enum):
    """What a claim dials for; written as-is in records and results."""
    QUEUE = "queue"          # a queue task: ``source_name`` is a task name
    SCHEDULE = "schedule"    # the schedule set: ``source_name`` is a schedule config name


class HomeType(str, enum.Enum):
    """What kind of key a never-dialed number goes back to (record field ``back``)."""
    QUEUE = "list"           # a task's number queue, at the end taken next
    SORTED_SET = "zset"      # the schedule set or a task's redial set, with its score


# The fields of an in-flight record, with the JSON type each holds. ``owner``
# (the instance id of the daemon that may act on the record) comes first in the
# JSON: the scripts check and rewrite it by that prefix, never decoding the rest.
RECORD_FIELDS = {
    "owner": str, "kind": str, "task": str, "queue": str, "back": str, "raw": str, "line": str, "group": int,
    "state": str, "uuid": str, "claimed_at": (int, float), "sent_at": (int, float), "attempt": int,
    "try": int, "sent": int, "done": dict, "score": (int, float), "seen": (str, type(None)),
}


@dataclasses.dataclass
class Claim:
    """A number this host holds until its result is written or it goes back."""
    claim_id: str
    kind: Kind
    source_name: str             # the task or schedule config it dials for
    home_key: str                # the list or sorted set it came from and goes back to
    raw: bytes                   # the number entry as upstream wrote it
    entry: Optional[model.NumberEntry]
    line: Optional[str]
    group: int                   # index into the source's line groups
    claimed_at: float
    state: ClaimState = ClaimState.CLAIMED
    attempt_no: int = 1          # 1, then 2, 3... for redials
    attempt: Optional[Attempt] = None
    score: float = 0.0           # sorted-set members: the time they were due
    expires: float = 0.0
    home_type: HomeType = HomeType.QUEUE
    home_raw: Optional[bytes] = None   # the member to put back when it is not ``raw`` (a redial)
    done: Dict[str, int] = dataclasses.field(default_factory=dict)   # redials made, per outcome class
    tries: int = 0               # originates built in this attempt (failover, throttle re-sends)
    sent: int = 0                # originates written to the switch in this attempt
    seen: Optional[str] = None   # idempotency key this claim holds
    # Memory only: the daily attempt counter this attempt raised, given back
    # if the number goes back unrung (not in the record: after a crash the
    # count stays, the safe side of a cap).
    cap_key: Optional[str] = None

    def advance(self, event: ClaimEvent) -> ClaimState:
        """Apply one lifecycle event; raises lifecycle.IllegalTransition and changes nothing if not allowed."""
        self.state = lifecycle.next_state(self.state, event)
        return self.state

    def may(self, event: ClaimEvent) -> bool:
        return lifecycle.allows(self.state, event)

    @property
    def owner(self) -> str:
        """Key for per-source counters; schedule configs get their own namespace."""
        return self.source_name if self.kind == Kind.QUEUE else SCHEDULE_PREFIX + self.source_name

    @property
    def number(self) -> str:
        return self.entry.number if self.entry else model.raw_repr(self.raw, 200)

    @property
    def label(self) -> str:
        """``task`` or ``config``: what the source is called in logs and results."""
        return "task" if self.kind == Kind.QUEUE else "config"

    def to_record(self, state: Optional[ClaimState] = None, owner: str = "") -> Dict[str, Any]:
        """The in-flight record (what recovery reads after a crash).

        ``Store`` writes its own instance id as ``owner`` whatever is passed here.
        """
        state = lifecycle.recorded_as(state or self.state)
        raw = self.home_raw if self.home_raw is not None else self.raw
        att = self.attempt
        return {"owner": owner, "kind": self.kind.value, "task": self.source_name, "queue": self.home_key,
                "back": self.home_type.value, "raw": raw.decode("utf-8", "surrogateescape"),
                "line": self.line or "", "group": self.group, "state": state.value,
                "uuid": att.uuid if att else "", "claimed_at": self.claimed_at,
                "sent_at": att.sent_at if att else 0, "attempt": self.attempt_no, "try": self.tries,
                "sent": self.sent, "done": self.done, "score": self.score, "seen": self.seen}

    @classmethod
    def from_record(cls, claim_id: str, rec: Dict[str, Any]) -> "Claim":
        """A claim from an in-flight record (complete, or as a claim script wrote it).

        The record's state becomes the claim's; its attempt (uuid, sent_at)
        is rebuilt when the record has one. An entry that no longer parses
        leaves ``entry`` None: the caller decides (it is never dialed).
        """
        raw = rec.get("raw", "")
        raw = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        kind = Kind(rec.get("kind") or Kind.QUEUE.value)
        home_type = HomeType(rec.get("back") or (HomeType.SORTED_SET if kind == Kind.SCHEDULE else HomeType.QUEUE))
        entry, expires, entry_raw, attempt_no, done = None, 0.0, raw, int(rec.get("attempt") or 1), {}
        try:
            entry_raw, attempt_no, done = redial_state(kind, home_type, raw)
            if kind == Kind.SCHEDULE:
                scheduled = model.parse_scheduled(raw)
                entry, expires = scheduled.entry, scheduled.expires
            else:
                entry = model.parse_number(entry_raw)
        except model.ModelError:
            pass
        recorded_done = rec.get("done")
        claim = cls(claim_id=claim_id, kind=kind, source_name=rec.get("task", ""), home_key=rec.get("queue", ""),
                    raw=entry_raw, entry=entry, line=rec.get("line") or None, group=int(rec.get("group") or 0),
                    claimed_at=float(rec.get("claimed_at") or 0), state=ClaimState(rec.get("state", "claimed")),
                    attempt_no=int(rec.get("attempt") or attempt_no), score=float(rec.get("score") or 0),
                    expires=expires, home_type=home_type, home_raw=raw if entry_raw is not raw else None,
                    done=dict(recorded_done) if isinstance(recorded_done, dict) else done,
                    tries=int(rec.get("try") or 0), sent=int(rec.get("sent") or 0), seen=rec.get("seen"))
        if rec.get("uuid"):
            claim.attempt = Attempt(uuid=rec["uuid"], line=claim.line or "", group_index=claim.group,
                                    sent_at=float(rec.get("sent_at") or 0))
        return claim


def redial_state(kind: Kind, home_type: HomeType, raw: bytes):
    """(entry raw, attempt number, redials done) of a claimed member.

    Queue redials are ``{"raw": entry, "attempt": n, "done": {...}}`` members
    of the task's redial set; schedule redials carry ``attempt`` and
    ``redial_done`` in their own params.
    """
    if kind == Kind.QUEUE and home_type == HomeType.SORTED_SET:
        doc = model.loads(raw)
        entry = doc.get("raw")
        if not isinstance(entry, str):
            raise model.ModelError("redial member without its entry")
        return entry.encode("utf-8", "surrogateescape"), int(doc.get("attempt") or 2), dict(doc.get("done") or {})
    if kind == Kind.SCHEDULE:
        try:
            params = (model.loads(raw) or {}).get("params") or {}
        except model.ModelError:
            params = {}
        if isinstance(params, dict):
            done = params.get("redial_done")
            attempt = params.get("attempt")
            return raw, attempt if isinstance(attempt, int) and attempt > 0 else 1, \
                dict(done) if isinstance(done, dict) else {}
    return raw, 1, {}
