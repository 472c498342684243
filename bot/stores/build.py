"""Which implementation of each store a configuration gets: in-process, SQLite (BOT_STATE_DIR) or Redis (REDIS_URL)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.config import Config
from bot.stores.admission import Admission, MemoryAdmission
from bot.stores.audit import AuditStore, RedisAudit, SqliteAudit
from bot.stores.fallback import Failover, FallbackAdmission, FallbackLimiter, FallbackTokens, FallbackUnionIds
from bot.stores.forget import forget_in_redis, forget_in_sqlite, note_relieved, relieved_lately
from bot.stores.grants import SqliteGrants, UserGrants
from bot.stores.limiter import ApiLimiter, MemoryLimiter
from bot.stores.previews import PreviewStore, RedisPreviews, SqlitePreviews
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.limits import RedisAdmission, RedisLimiter, connect
from bot.stores.redis.values import RedisGrants, RedisSuiteTickets, RedisTokens, RedisUnionIds
from bot.stores.sqlite.database import Database, damaged
from bot.stores.suite_tickets import SqliteSuiteTickets, SuiteTickets
from bot.stores.tokens import MemoryTokens, TokenCache
from bot.stores.union_ids import MemoryUnionIds, UnionIds

DATABASE_FILE = "bot.sqlite3"


class StateUnavailable(Exception):
    """The embedded database cannot be created or opened (BOT_STATE_DIR is not a writable folder)."""


class Table(Protocol):
    async def create(self) -> None:
        """Create the store's table in the database unless it exists."""
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
    database: Database | None = None
    tables: tuple[Table, ...] = ()
    redis: CommandBatcher | None = None
    redis_limiter: RedisLimiter | None = None
    namespace: str = ""  # the client id: what Redis keys start with (calbot:{namespace}:)

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

    async def forget_organization(self, corp_id: str, token_prefixes: tuple[str, ...]) -> int:
        """An organization removed the app (ISV): its token and its users' tokens (keys starting with
        `token_prefixes`), unionIds, user grants and pending connects, bulk previews and rate-limit windows are
        dropped, in the shared store and in this process. Returns how many stored keys or rows went."""
        await self.union_ids.forget(f"{corp_id}:")
        await self.forget_here(corp_id, token_prefixes)
        if self.redis is not None:
            prefix = f"calbot:{self.namespace}:"
            forgotten = await forget_in_redis(self.redis, prefix, self.namespace, corp_id)
            await note_relieved(self.redis, prefix, corp_id)  # the other dynos forget their copies (RelievedWatcher)
            return forgotten
        if self.database is not None:
            return await forget_in_sqlite(self.database, corp_id)
        return 0

    async def forget_here(self, corp_id: str, token_prefixes: tuple[str, ...]) -> None:
        """This process's copies of an organization's tokens, unionIds and per-sender windows."""
        if isinstance(self.tokens, MemoryTokens | FallbackTokens):
            for prefix in token_prefixes:
                self.tokens.forget(prefix)
        if isinstance(self.union_ids, MemoryUnionIds | FallbackUnionIds):
            await self.union_ids.forget_here(f"{corp_id}:")
        if isinstance(self.admission, MemoryAdmission | FallbackAdmission):
            self.admission.forget(f"{corp_id}:")  # per-sender windows: sender keys start with the organization

    async def relieved(self) -> dict[str, int]:
        """Organizations that removed the app lately (Redis: noted by whichever dyno got the event), with when."""
        if self.redis is None:
            return {}
        return await relieved_lately(self.redis, f"calbot:{self.namespace}:")

    async def close(self) -> None:
        if self.redis_limiter is not None:
            self.redis_limiter.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.database is not None:
            await self.database.close()


def build_stores(config: Config) -> Stores:
    """Without REDIS_URL: one dyno, its limits and caches in the process and what must survive a restart (suite tickets,
    user grants, bulk previews, audit records) in SQLite.
    With it: everything shared through Redis, limits and caches falling back to the process while Redis fails."""
    local_admission = MemoryAdmission(config.user_rate, config.user_rate_window, config.dedupe_seconds)
    local_limiter = MemoryLimiter(config.api_qps)
    if not config.redis_url:
        database = Database(Path(config.state_dir) / DATABASE_FILE)
        suite_tickets, user_grants = SqliteSuiteTickets(database), SqliteGrants(database)
        previews, audits = SqlitePreviews(database), SqliteAudit(database)
        return Stores(
            admission=local_admission,
            limiter=local_limiter,
            tokens=MemoryTokens(),
            union_ids=MemoryUnionIds(),
            suite_tickets=suite_tickets,
            user_grants=user_grants,
            previews=previews,
            audits=audits,
            database=database,
            tables=(suite_tickets, user_grants, previews, audits),
        )
    batcher = CommandBatcher(connect(config.redis_url, config.redis_tls_verify))
    prefix = f"calbot:{config.client_id}:"
    failover = Failover()
    windows = (config.user_rate_window, config.dedupe_seconds)
    redis_limiter = RedisLimiter(batcher, prefix, config.api_qps)
    return Stores(
        admission=FallbackAdmission(
            RedisAdmission(batcher, prefix, config.user_rate, *windows), local_admission, failover
        ),
        limiter=FallbackLimiter(redis_limiter, local_limiter, failover),
        tokens=FallbackTokens(RedisTokens(batcher, prefix), MemoryTokens(), failover),
        union_ids=FallbackUnionIds(RedisUnionIds(batcher, prefix), MemoryUnionIds(), failover),
        # what must survive a restart never falls back to memory: a failed write fails its caller
        suite_tickets=RedisSuiteTickets(batcher, prefix),
        user_grants=RedisGrants(batcher, prefix),
        previews=RedisPreviews(batcher, config.client_id),
        audits=RedisAudit(batcher, config.client_id, per_organization=config.is_isv),
        redis=batcher,
        redis_limiter=redis_limiter,
        namespace=config.client_id,
    )
