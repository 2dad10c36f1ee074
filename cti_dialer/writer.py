"""Writes that end claims (results, requeues), in batches that survive a Redis outage.

The call tracker decides; this component carries the decision to Redis. A
write that fails on a connection problem stays queued here, in order, until
Redis is back: the claim's in-flight record is still in Redis meanwhile, so a
crash loses nothing either (recovery settles the record at the next start).
"""
import logging
import os
import time
from typing import Dict, List, Optional, Tuple

import gevent
import gevent.event
import orjson
import redis

from .runtime import RETRYABLE

log = logging.getLogger("cti_dialer")

# Results per FINISH script call: large enough to amortise the round trip,
# small enough that one call never holds Redis for long.
BATCH = 500


JOURNAL_NAME = "pending-writes.jsonl"


class ResultWriter:
    def __init__(self, store, journal_dir: str = ""):
        self.store = store
        # Where writes that cannot reach Redis before a stop are kept (None: nowhere).
        self.journal = os.path.join(journal_dir, JOURNAL_NAME) if journal_dir else None
        self._replaying = False
        self.results: List[Tuple] = []         # store.finish items
        self.requeues: List[Tuple[str, Dict]] = []   # (claim id, in-flight record)
        self.wake = gevent.event.Event()
        self._retry_delay = 0.2
        self._not_before = 0.0      # after a failed write: no retry before this, whatever wakes us

    def finish(self, claim_id: str, line: Optional[str], result: Dict, rejected: Optional[Dict],
               counters=None, retry=None):
        """Queue one claim's end (see Store.finish for the item's parts)."""
        self.results.append((claim_id, line, result, rejected, counters, retry))
        self.wake.set()

    def requeue(self, claim_id: str, record: Dict):
        """Queue putting a never-dialed number back where it came from."""
        self.requeues.append((claim_id, record))
        self.wake.set()

    def pending_ids(self):
        """Claim ids whose write is still queued here."""
        return {item[0] for item in self.results} | {item[0] for item in self.requeues}

    def __len__(self):
        return len(self.results) + len(self.requeues)

    # --- component ---------------------------------------------------------------

    def initialize(self):
        pass

    def loop(self, now: float) -> float:
        """Write everything queued; returns how long to wait (longer while Redis is away)."""
        if now < self._not_before:
            return self._not_before - now
        while self.requeues or self.results:
            try:
                self._write_some()
            except RETRYABLE as exc:
                log.warning("cannot write %d result(s) and %d requeue(s) yet (%s); keeping them",
                            len(self.results), len(self.requeues), exc)
                self._not_before = now + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, 5.0)
                return self._not_before - now
            self._retry_delay = 0.2
        if self._replaying:
            self._replaying = False
            self._forget_journal()
        return 1.0

    def shutdown(self):
        pass

    def _write_some(self):
        if self.requeues:
            claim_id, rec = self.requeues[0]
            try:
                self.store.requeue(claim_id, rec)
            except redis.ResponseError as exc:
                log.error("cannot requeue %s (%s); its record stays in-flight for recovery: %s", claim_id, exc, rec)
            self.requeues.pop(0)
            return
        batch = self.results[:BATCH]
        try:
            self.store.finish(batch)
        except redis.ResponseError:
            # One bad item must not block every result behind it.
            for item in batch:
                try:
                    self.store.finish([item])
                except redis.ResponseError as exc:
                    log.error("cannot write result for %s (%s); result: %s", item[0], exc, item[2])
        del self.results[:len(batch)]

    # --- the local journal ---------------------------------------------------------
    #
    # A stop while Redis is away would lose outcomes the daemon already knows
    # (an answer, a busy that earns a redial): at the next start their
    # records say "sent" and the switch no longer knows the call, so they
    # would be settled UNKNOWN. They go to a file instead, fsync'd, and are
    # written to Redis first thing at the next start. Replaying is safe more
    # than once: the scripts act only while the in-flight record exists.

    def save_journal(self) -> int:
        """Write what is still queued to the journal (atomically); returns how many items (0 on failure)."""
        if self.journal is None or not len(self):
            return 0
        try:
            return self._save_journal()
        except OSError as exc:
            log.error("cannot write the journal %s: %s", self.journal, exc)
            return 0

    def _save_journal(self) -> int:
        lines = [orjson.dumps({"finish": [_jsonable(part) for part in item]}) for item in self.results]
        lines += [orjson.dumps({"requeue": [claim_id, record]}) for claim_id, record in self.requeues]
        tmp = self.journal + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(b"\n".join(lines) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.journal)
        _fsync_dir(os.path.dirname(self.journal))
        return len(lines)

    def load_journal(self) -> int:
        """Queue what an earlier stop left in the journal; returns how many items."""
        if self.journal is None or not os.path.exists(self.journal):
            return 0
        try:
            return self._load_journal()
        except OSError as exc:
            log.error("cannot read the journal %s: %s", self.journal, exc)
            return 0

    def _load_journal(self) -> int:
        count = 0
        with open(self.journal, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.error("journal %s: unreadable line skipped: %r", self.journal, line[:200])
                    continue
                if "finish" in doc:
                    claim_id, line_name, result, rejected, counters, retry = doc["finish"]
                    self.finish(claim_id, line_name, result, rejected, counters, retry)
                elif "requeue" in doc:
                    self.requeue(*doc["requeue"])
                count += 1
        self._replaying = True
        return count

    def _forget_journal(self):
        try:
            os.unlink(self.journal)
            _fsync_dir(os.path.dirname(self.journal))
        except FileNotFoundError:
            pass

    def drain(self, deadline: float) -> bool:
        """Write what is queued before exit (the loop's greenlet has stopped); True when all went out."""
        while len(self) and time.time() < deadline:
            wait = self.loop(time.time())
            if len(self):
                gevent.sleep(min(wait, max(0.0, deadline - time.time())))
        return not len(self)


def _jsonable(part):
    """A finish item's part as JSON can carry it (a redial member is bytes)."""
    if isinstance(part, tuple):
        return [_jsonable(x) for x in part]
    if isinstance(part, bytes):
        return part.decode("utf-8", "surrogateescape")
    return part


def _fsync_dir(path):
    """Make a rename or unlink in ``path`` survive a power cut."""
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
