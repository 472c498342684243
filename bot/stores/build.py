"""Which implementation of each store a configuration gets: in-process, SQLite (BOT_STATE_DIR) or Redis (REDIS_URL)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.config import Config
from bot.stores.admission import Admission, MemoryAdmission
from bot.stores.audit import AuditStore
from bot.stores.cards import CardStore
from bot.stores.fallback import Failover, FallbackAdmission, FallbackLimiter, FallbackTokens, FallbackUnionIds
from bot.stores.grants import UserGrants
from bot.stores.journal import Journal
from bot.stores.keys import KeyBuilder
from bot.stores.languages import LastLanguages
from bot.stores.limiter import ApiLimiter, MemoryLimiter
from bot.stores.previews import PreviewStore
from bot.stores.redis.admission import RedisAdmission
from bot.stores.redis.audit import RedisAudit
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.cards import RedisCards
from bot.stores.redis.client import connect
from bot.stores.redis.grants import RedisGrants
from bot.stores.redis.journal import RedisJournal
from bot.stores.redis.limiter import RedisLimiter
from bot.stores.redis.previews import RedisPreviews
from bot.stores.redis.relieved import note_relieved, relieved_lately
from bot.stores.redis.suite_tickets import RedisSuiteTickets
from bot.stores.redis.tokens import RedisTokens
from bot.stores.redis.union_ids import RedisUnionIds
from bot.stores.sqlite.audit import SqliteAudit
from bot.stores.sqlite.cards import SqliteCards
from bot.stores.sqlite.database import Database, damaged
from bot.stores.sqlite.grants import SqliteGrants
from bot.stores.sqlite.journal import SqliteJournal
from bot.stores.sqlite.previews import SqlitePreviews
from bot.stores.sqlite.suite_tickets import SqliteSuiteTickets
from bot.stores.suite_tickets import SuiteTickets
from bot.stores.tokens import MemoryTokens, TokenCache
from bot.stores.union_ids import MemoryUnionIds, UnionIds

log = logging.getLogger("bot.intake")
DATABASE_FILE = "bot.sqlite3"
JOURNAL_FILE = "journal.sqlite3"


class StateUnavailable(Exception):
    """The embedded database cannot be created or opened (BOT_STATE_DIR is not a writable folder)."""


class Table(Protocol):
    async def create(self) -> None:
        """Create the store's table in the database unless it exists."""
        ...


class ByOrganization(Protocol):
    async def forget_organization(self, corp_id: str) -> int:
        """Forget what is kept of the organization (it removed the app); how many keys, rows or entries went."""
        ...


@dataclass(slots=True)
class Stores:
    """Every store of the process; open() before use (it creates the database), close() at shutdown."""

    admission: Admission
    limiter: ApiLimiter
    tokens: TokenCache
    union_ids: UnionIds
    suite_tickets: SuiteTickets
    user_grants: UserGrants
    previews: PreviewStore
    audits: AuditStore
    journal: Journal
    languages: LastLanguages
    keys: KeyBuilder
    cards: CardStore  # the interactive cards sent (BOT_CARD_TEMPLATE_ID)
    database: Database | None = None
    tables: tuple[Table, ...] = ()
    redis: CommandBatcher | None = None
    redis_limiter: RedisLimiter | None = None
    local_copies: tuple[ByOrganization, ...] = ()  # this process's copies of shared state (Redis)

    async def open(self) -> None:
        """Create the database and its tables if they do not exist; StateUnavailable if that cannot be done."""
        if self.database is None:
            return
        try:
            await self.database.open()
            for table in self.tables:
                await table.create()
        except (OSError, sqlite3.Error) as error:
            problem = f"{type(error).__name__}: {error}"
            if damaged(error):  # never replaced: users' grants and the suite ticket cannot be fetched again
                raise StateUnavailable(
                    f"{self.database.path} is damaged ({problem}); it holds users' connected accounts and the suite "
                    "ticket, so the bot does not replace it: restore it from a backup, or move it away to start "
                    "without them"
                ) from None
            raise StateUnavailable(f"BOT_STATE_DIR: {self.database.path} cannot be used ({problem})") from None

    @property
    def by_organization(self) -> tuple[ByOrganization, ...]:
        """Every store that keeps something of an organization (the audit trail and suite tickets say so themselves)."""
        return (
            self.admission,
            self.limiter,
            self.tokens,
            self.union_ids,
            self.user_grants,
            self.previews,
            self.audits,
            self.suite_tickets,
            self.languages,
            self.cards,
        )

    async def forget_organization(self, corp_id: str) -> int:
        """An organization removed the app (ISV): every store forgets it, in the shared store and in this process;
        with Redis, the other dynos are told to forget their copies. How many keys, rows or entries went."""
        forgotten = 0
        for store in self.by_organization:
            forgotten += await store.forget_organization(corp_id)
        if self.redis is not None:
            await note_relieved(self.redis, self.keys, corp_id)  # the other dynos forget their copies (RelievedWatcher)
        return forgotten

    async def forget_here(self, corp_id: str) -> None:
        """This process's copies of an organization's shared state (another dyno saw it remove the app)."""
        for copy in (*self.local_copies, self.languages):
            await copy.forget_organization(corp_id)

    async def relieved(self) -> dict[str, int]:
        """Organizations that removed the app lately (Redis: noted by whichever dyno got the event), with when."""
        if self.redis is None:
            return {}
        return await relieved_lately(self.redis, self.keys)

    async def close_background_writes(self) -> None:
        """What a store writes in the background is written: the audit records kept in the journal (before it
        closes, so that they go from it with its last write)."""
        if isinstance(self.audits, SqliteAudit):
            await self.audits.close()

    async def close(self) -> None:
        if self.redis_limiter is not None:
            self.redis_limiter.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.database is not None:
            await self.database.close()


def build_stores(config: Config, per_organization: bool = False) -> Stores:
    """Without REDIS_URL: one dyno, its limits and caches in the process and what must survive a restart (suite tickets,
    user grants, bulk previews, audit records, the journal) in SQLite.
    With it: everything shared through Redis, limits and caches falling back to the process while Redis fails.
    `per_organization`: the app serves many organizations (the app type's policy says so)."""
    local_admission = MemoryAdmission(config.user_rate, config.user_rate_window, config.dedupe_seconds)
    local_limiter = MemoryLimiter(config.api_qps)
    keys = KeyBuilder(config.client_id)
    if not config.redis_url:
        if config.dyno:
            log.warning(
                "state kept on the dyno's own disk, which does not outlive the dyno: set REDIS_URL so that it "
                "survives a restart or deploy",
                extra={"fields": {"dyno": config.dyno, "lost_at_restart": _kept_on_disk(config, per_organization)}},
            )
        database = Database(Path(config.state_dir) / DATABASE_FILE)
        suite_tickets, user_grants = SqliteSuiteTickets(database), SqliteGrants(database)
        journal = SqliteJournal(Path(config.state_dir) / JOURNAL_FILE, config.dedupe_seconds)
        previews, audits, cards = SqlitePreviews(database), SqliteAudit(database, journal), SqliteCards(database)
        return Stores(
            admission=local_admission,
            limiter=local_limiter,
            tokens=MemoryTokens(),
            union_ids=MemoryUnionIds(),
            suite_tickets=suite_tickets,
            user_grants=user_grants,
            previews=previews,
            audits=audits,
            journal=journal,
            languages=LastLanguages(),
            keys=keys,
            cards=cards,
            database=database,
            tables=(suite_tickets, user_grants, previews, audits, cards),
        )
    batcher = CommandBatcher(connect(config.redis_url, config.redis_tls_verify))
    failover = Failover()
    windows = (config.user_rate_window, config.dedupe_seconds)
    redis_limiter = RedisLimiter(batcher, keys, config.api_qps)
    local_tokens, local_union_ids = MemoryTokens(), MemoryUnionIds()
    # Never DYNO alone: a restarted dyno starts while the old process still finishes its work under that name
    consumer = f"{config.dyno or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
    return Stores(
        admission=FallbackAdmission(
            RedisAdmission(batcher, keys, config.user_rate, *windows), local_admission, failover
        ),
        limiter=FallbackLimiter(redis_limiter, local_limiter, failover),
        tokens=FallbackTokens(RedisTokens(batcher, keys), local_tokens, failover),
        union_ids=FallbackUnionIds(RedisUnionIds(batcher, keys), local_union_ids, failover),
        # what must survive a restart never falls back to memory: a failed write fails its caller
        suite_tickets=RedisSuiteTickets(batcher, keys),
        user_grants=RedisGrants(batcher, keys),
        previews=RedisPreviews(batcher, keys),
        audits=RedisAudit(batcher, keys, per_organization=per_organization),
        journal=RedisJournal(batcher, keys, consumer, config.dedupe_seconds, config.journal_claim_seconds),
        languages=LastLanguages(),
        keys=keys,
        cards=RedisCards(batcher, keys),
        redis=batcher,
        redis_limiter=redis_limiter,
        local_copies=(local_admission, local_limiter, local_tokens, local_union_ids),
    )


def _kept_on_disk(config: Config, per_organization: bool) -> list[str]:
    """What a Heroku dyno loses at its next restart when the bot has no Redis: said once, in one line."""
    kept = ["commands in flight (the journal)", "bulk previews", "audit records"]
    if config.user_tokens:
        kept.append("users' connected accounts")
    if per_organization:
        kept.append("the suite ticket")
    if config.card_templates:
        kept.append("what interactive cards offered (their presses are then refused)")
    return kept
