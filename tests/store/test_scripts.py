"""The scripts' side of the contracts: in-flight records as Python reads them, states and statuses.

Run on fakeredis and on a real redis-server (conftest). A field renamed on
either side, or a state string typed into Lua, fails here.
"""
import re

import orjson
import pytest

from cti_dialer import record_scripts, scripts
from cti_dialer.claim import RECORD_FIELDS, Claim, HomeType, Kind
from cti_dialer.lifecycle import ClaimState
from cti_dialer.store import Candidates
from tests.store.conftest import KEYS

NOW = 1700000000.25
SCHED = KEYS.schedule_numbers
MEMBER = '{"params": {"number": "138", "expires": 0, "config": "cfg"}}'

# The fields the claim scripts (CLAIM_NUMBERS, CLAIM_SCHEDULED) write: what
# is known at claim time. Claim.to_record writes these and the rest.
CLAIMED_FIELDS = {"owner", "kind", "task", "queue", "back", "raw", "line", "group", "state", "claimed_at", "score"}
# TAKE_REJECTED takes no line, and adds the reason (recovery's rejected result).
REJECTED_FIELDS = CLAIMED_FIELDS - {"line", "group"}
REJECTED_ONLY = {"reason"}


@pytest.mark.unit
def test_script_records_are_subsets_of_the_python_record():
    assert set(RECORD_FIELDS) - CLAIMED_FIELDS == {"uuid", "sent_at", "attempt", "try", "sent", "done", "seen"}
    assert REJECTED_FIELDS < CLAIMED_FIELDS and not REJECTED_ONLY & set(RECORD_FIELDS)


def claim_from_queue(store):
    store.r.lpush("q", "138")
    store.claim_numbers("q", "t", Candidates([[("l1", 5)]]), ["c1"], NOW, 60)
    return {"owner": store.instance_id, "kind": "queue", "task": "t", "queue": "q", "back": "list", "raw": "138",
            "line": "l1", "group": 0, "state": "claimed", "claimed_at": NOW, "score": 0}


def claim_a_redial(store):
    member = '{"raw": "138", "attempt": 2, "done": {"busy": 1}}'
    store.r.zadd(KEYS.retries("t"), {member: 50})
    store.claim_numbers("q", "t", Candidates([[("l1", 5)]]), ["c1"], NOW, 60)
    return {"owner": store.instance_id, "kind": "queue", "task": "t", "queue": KEYS.retries("t"), "back": "zset",
            "raw": member, "line": "l1", "group": 0, "state": "claimed", "claimed_at": NOW, "score": 50}


def reject_a_redial(score):
    def run(store):
        member = '{"raw": "138", "attempt": 2, "done": {"busy": 1}}'
        store.r.zadd(KEYS.retries("t"), {member: score})
        # Its claim id is used up, so the batch ends with nothing to dial.
        assert store.claim_numbers("q", "t", Candidates([[("l1", 5)]]), ["c1"], NOW, 60)[:2] == ("ok", [])
        assert store.r.zcard(KEYS.retries("t")) == 0 and store.r.zcard(KEYS.line_lease("l1")) == 0
        return {"owner": store.instance_id, "kind": "queue", "task": "t", "queue": KEYS.retries("t"),
                "back": "zset", "raw": member, "state": "rejected", "claimed_at": NOW, "score": 0,
                "reason": "redial member scored %s: not a time to call" % ("inf" if score > 0 else "-inf")}
    return run


def schedule(expires, line_free=True):
    def run(store):
        store.r.zadd(SCHED, {MEMBER: 90})
        store.r.zadd(KEYS.line_lease("full"), {"other": NOW + 600})
        groups = [[("full", 1)], [("l2", 5)]] if line_free else [[("full", 1)]]
        (status, _, _), = store.claim_scheduled([(MEMBER.encode(), "c1", expires, "cfg", Candidates(groups))],
                                                NOW, 60)
        state = {"ok": "claimed"}.get(status, status)
        line, group = ("l2", 1) if state == "claimed" else ("", 0)
        return {"owner": store.instance_id, "kind": "schedule", "task": "cfg", "queue": SCHED, "back": "zset",
                "raw": MEMBER, "line": line, "group": group, "state": state, "claimed_at": NOW, "score": 90}
    return run


def schedule_scored(score):
    def run(store):
        store.r.zadd(SCHED, {MEMBER: score})
        (status, reason, _), = store.claim_scheduled([(MEMBER.encode(), "c1", 0, "cfg", Candidates([[("l1", 5)]]))],
                                                     NOW, 60)
        assert (status, reason) == ("rejected", "score %s is not a time to call" % ("inf" if score > 0 else "-inf"))
        return {"owner": store.instance_id, "kind": "schedule", "task": "cfg", "queue": SCHED, "back": "zset",
                "raw": MEMBER, "state": "rejected", "claimed_at": NOW, "score": 0, "reason": reason}
    return run


def take_rejected(store):
    store.r.zadd(SCHED, {"not json": 90})
    store.take_rejected(b"not json", "c1", NOW, "must be JSON", "cfg")
    return {"owner": store.instance_id, "kind": "schedule", "task": "cfg", "queue": SCHED, "back": "zset",
            "raw": "not json", "state": "rejected", "claimed_at": NOW, "score": 90, "reason": "must be JSON"}


@pytest.mark.parametrize("produce, fields", [
    (claim_from_queue, CLAIMED_FIELDS),
    (claim_a_redial, CLAIMED_FIELDS),
    (schedule(0), CLAIMED_FIELDS),
    (schedule(NOW - 1), CLAIMED_FIELDS),                  # expired
    (schedule(0, line_free=False), CLAIMED_FIELDS),       # dropped
    (take_rejected, REJECTED_FIELDS | REJECTED_ONLY),
    (reject_a_redial(float("-inf")), REJECTED_FIELDS | REJECTED_ONLY),
    (reject_a_redial(float("inf")), REJECTED_FIELDS | REJECTED_ONLY),
    (schedule_scored(float("-inf")), REJECTED_FIELDS | REJECTED_ONLY),
    (schedule_scored(float("inf")), REJECTED_FIELDS | REJECTED_ONLY),
], ids=["queue", "redial", "schedule", "expired", "dropped", "rejected", "redial--inf", "redial-+inf",
        "schedule--inf", "schedule-+inf"])
def test_script_record_is_what_python_reads(store, produce, fields):
    expected = produce(store)
    encoded = store.r.hget(KEYS.inflight, "c1")
    # The scripts find a record's owner by this prefix, without decoding it.
    assert encoded.startswith(b'{"owner":"%s",' % store.instance_id.encode())
    record = orjson.loads(encoded)
    assert set(record) == fields and record == expected
    for name in fields - REJECTED_ONLY:
        assert isinstance(record[name], RECORD_FIELDS[name]), name
    claim = Claim.from_record("c1", record)
    assert (claim.kind, claim.source_name, claim.home_key, claim.home_type, claim.state) == (
        Kind(record["kind"]), record["task"], record["queue"], HomeType(record["back"]), ClaimState(record["state"]))
    assert (claim.line, claim.group, claim.claimed_at, claim.score) == (
        record.get("line") or None, record.get("group", 0), NOW, record["score"])
    # Written back by Python, the record says what the script said.
    rewritten = claim.to_record(owner=record["owner"])
    assert {name: rewritten[name] for name in fields - REJECTED_ONLY} == {
        name: record[name] for name in fields - REJECTED_ONLY}


def lua_sources():
    return {name: value for module in (scripts, record_scripts) for name, value in vars(module).items()
            if name.isupper() and isinstance(value, str) and "redis.call" in value}


@pytest.mark.unit
def test_no_claim_state_is_typed_in_lua():
    statuses = {scripts.OK, scripts.EMPTY, scripts.NO_LINE, scripts.GONE, scripts.REQUEUED, scripts.DNC,
                scripts.DUPLICATE, scripts.LOST, scripts.HOST_TAKEN}
    states = {s.value for s in ClaimState}
    for name, lua in lua_sources().items():
        typed = set(re.findall(r"'([a-z_]+)'", lua))
        # "requeued" is also CLAIM_SCHEDULED's status for a member written back.
        assert typed & states <= statuses & states, name


@pytest.mark.unit
@pytest.mark.parametrize("status", ["OK", "EMPTY", "NO_LINE", "GONE", "REQUEUED", "DNC", "DUPLICATE", "LOST",
                                    "HOST_TAKEN"])
def test_each_status_constant_is_a_script_reply(status):
    assert any("'%s'" % getattr(scripts, status) in lua for lua in lua_sources().values())


def test_scripts_are_registered_once_per_client(store):
    assert scripts._script(store.r, scripts.HAS_WORK) is scripts._script(store.r, scripts.HAS_WORK)


@pytest.mark.unit
def test_python_writes_the_owner_first_whatever_the_record_says():
    encoded = scripts.encode_record("me", {"kind": "queue", "owner": "someone else", "raw": "1"})
    assert encoded == b'{"owner":"me","kind":"queue","raw":"1"}'
    # A raw entry that is not UTF-8 goes back byte for byte, as cjson writes it.
    odd = scripts.encode_record("me", {"raw": b"\xff1".decode("utf-8", "surrogateescape")})
    assert odd == b'{"owner":"me","raw":"\xff1"}'
