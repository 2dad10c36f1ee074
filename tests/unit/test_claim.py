"""The in-flight record: one encoder (Claim.to_record), one decoder (Claim.from_record)."""
import json

import pytest

from cti_dialer.claim import RECORD_FIELDS, Claim, HomeType, Kind
from cti_dialer.lifecycle import ClaimState
from cti_dialer.outcome import Attempt

pytestmark = pytest.mark.unit


def sent_claim(**change):
    claim = Claim(claim_id="c1", kind=Kind.QUEUE, source_name="t1", home_key="q:t1", raw=b"1001", entry=None,
                  line="l1", group=1, claimed_at=100.5, state=ClaimState.SENT, attempt_no=2, tries=3, sent=2,
                  done={"busy": 1}, seen="seen-key")
    claim.attempt = Attempt(uuid="11111111-1111-4111-8111-111111111111", line="l1", group_index=1, sent_at=101.25)
    for name, value in change.items():
        setattr(claim, name, value)
    return claim


def test_every_field_has_its_declared_type_and_survives_json():
    record = json.loads(json.dumps(sent_claim().to_record()))
    assert set(record) == set(RECORD_FIELDS)
    for name, kind in RECORD_FIELDS.items():
        assert isinstance(record[name], kind), name


def test_round_trip_keeps_what_recovery_needs():
    claim = sent_claim()
    back = Claim.from_record("c1", json.loads(json.dumps(claim.to_record())))
    for name in ("kind", "source_name", "home_key", "raw", "line", "group", "claimed_at", "state", "attempt_no",
                 "tries", "sent", "done", "seen", "home_type"):
        assert getattr(back, name) == getattr(claim, name), name
    assert back.entry.number == "1001"
    assert (back.attempt.uuid, back.attempt.sent_at) == (claim.attempt.uuid, claim.attempt.sent_at)


@pytest.mark.parametrize("state, recorded", [
    (ClaimState.ANSWERED, "sent"),           # memory-only: a restart must ask the switch
    (ClaimState.PARKED, "parked"),
    (ClaimState.CLAIMED, "claimed"),
])
def test_memory_states_are_recorded_as_what_a_restart_must_do(state, recorded):
    assert sent_claim(state=state).to_record()["state"] == recorded


def test_a_redial_member_records_the_member_and_reads_back_its_entry():
    member = b'{"raw":"1001","attempt":3,"done":{"busy":2},"id":"x"}'
    claim = sent_claim(home_type=HomeType.SORTED_SET, home_key="retry-key", home_raw=member, attempt_no=3)
    record = claim.to_record()
    assert record["raw"] == member.decode() and record["back"] == "zset"
    back = Claim.from_record("c1", record)
    assert back.raw == b"1001" and back.home_raw == member and back.attempt_no == 3


def test_a_schedule_member_and_a_bad_entry():
    raw = '{"params":{"number":"2002","config":"c1","expires":500}}'
    back = Claim.from_record("c2", {"kind": "schedule", "task": "c1", "queue": "zkey", "raw": raw,
                                    "state": "expired", "claimed_at": 1})
    assert (back.kind, back.home_type, back.entry.number, back.expires, back.state, back.owner) == \
        (Kind.SCHEDULE, HomeType.SORTED_SET, "2002", 500.0, ClaimState.EXPIRED, "schedule:c1")
    bad = Claim.from_record("c3", {"kind": "queue", "task": "t1", "queue": "q", "raw": "10 01", "state": "claimed"})
    assert bad.entry is None and bad.number == "10 01"


def test_the_owner_comes_first_and_is_not_part_of_the_claim():
    record = sent_claim().to_record(owner="instance-1")
    assert list(record)[0] == "owner" and record["owner"] == "instance-1"
    assert sent_claim().to_record()["owner"] == ""          # the Store writes its own id
    back = Claim.from_record("c1", record)
    assert back.owner == "t1"          # Claim.owner is the counters' key, not the record's owner
