"""Audit records: every calendar change made through the bot, kept 90 days; and, apart from them, the refused admin
commands, one row per sender and command (counted), a few per organization."""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, fields, replace
from typing import Protocol

KEEP_SECONDS = 90 * 86_400
MAX_PER_SUBJECT = 1_000  # newest records kept per calendar in Redis; older ones are dropped with the 90 days
PRUNE_SECONDS = 3_600.0  # how often the embedded store deletes records past the 90 days (reads never show them)
MAX_SUBJECT_LENGTH = 256  # an `audit <text>` looks up at most this much of the text
MAX_REFUSED_SUBJECT = 64  # a refused `audit <text>` keeps at most this much of the text
MAX_REFUSALS = 20  # senders (with their command) kept per organization; the oldest go first
REFUSED = "admins_only"  # the result of refusal records earlier versions kept with the changes: never shown


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited act: who (staff id, organization), when (epoch seconds), on what, with which result."""

    at: float
    action: str  # "unsubscribe", "resubscribe", "stats", "audit"
    staff_id: str
    corp_id: str
    union_id: str
    calendar_id: str  # for a refused `audit`, the text asked about
    name: str
    result: str  # the outcome, "admins_only" for a refusal
    code: str
    request_id: str
    msg_id: str


# a record's values in column order, read in C (asdict deep-copies every value: 9 µs against 0.2 per record)
COLUMNS = operator.attrgetter(*(field.name for field in fields(AuditRecord)))


@dataclass(frozen=True, slots=True)
class Refusal:
    """An admin command someone else asked for: the latest time, what it asked about, and how many times."""

    at: float
    action: str  # "stats" or "audit"
    staff_id: str
    corp_id: str
    subject: str
    count: int


def name_key(name: str) -> str:
    return name.strip().casefold()


class AuditStore(Protocol):
    async def record(self, entry: AuditRecord) -> None: ...

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
        """The newest `limit` changes of the calendar with this id or name (ignoring case), oldest first; only the
        organization's when `corp_id` is given (an ISV app's admin)."""
        ...

    async def refuse(self, refusal: Refusal) -> None:
        """Note a refused admin command: the sender's row for that command is updated (count + 1), not added to."""
        ...

    async def refusals(self, corp_id: str) -> list[Refusal]:
        """The organization's refused admin commands (at most MAX_REFUSALS), oldest first."""
        ...

    async def forget_organization(self, corp_id: str) -> int:
        """Nothing: the audit trail of an organization that removed the app is kept for its 90 days, as before."""
        ...


class MemoryAudit:
    """Records of this process: for tests and tools only, since they do not survive a restart."""

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []
        self._refusals: dict[tuple[str, str, str], Refusal] = {}  # (corp, staff, action): the newest are shown

    async def record(self, entry: AuditRecord) -> None:
        since = time.time() - KEEP_SECONDS
        self._records = [kept for kept in self._records if kept.at >= since]
        self._records.append(entry)

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
        since, named = time.time() - KEEP_SECONDS, name_key(calendar)
        found = [
            record
            for record in self._records
            if (record.calendar_id == calendar or (named and name_key(record.name) == named))
            and record.at >= since
            and record.result != REFUSED
            and (corp_id is None or record.corp_id == corp_id)
        ]
        return sorted(found, key=lambda record: record.at)[-limit:]

    async def refuse(self, refusal: Refusal) -> None:
        key = (refusal.corp_id, refusal.staff_id, refusal.action)
        before = self._refusals.pop(key, None)
        count = before.count + 1 if before else 1
        self._refusals[key] = replace(refusal, subject=refusal.subject[:MAX_REFUSED_SUBJECT], count=count)

    async def refusals(self, corp_id: str) -> list[Refusal]:
        since = time.time() - KEEP_SECONDS
        kept = [refusal for key, refusal in self._refusals.items() if key[0] == corp_id and refusal.at >= since]
        return sorted(kept, key=lambda refusal: refusal.at)[-MAX_REFUSALS:]

    async def forget_organization(self, corp_id: str) -> int:
        return 0  # kept for KEEP_SECONDS, see AuditStore
