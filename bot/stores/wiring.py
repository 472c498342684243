"""Where pending bulk actions and audit records live: Redis when REDIS_URL is set, else the embedded SQLite file."""

from __future__ import annotations

from pathlib import Path

from bot.config import Config
from bot.redis_batch import CommandBatcher
from bot.redis_state import connect
from bot.stores.audit import AuditStore, RedisAudit, SqliteAudit
from bot.stores.previews import PreviewStore, RedisPreviews, SqlitePreviews
from bot.stores.sqlite import Database


class Stores:
    """Pending bulk actions and audit records: in Redis when REDIS_URL is set (every dyno shares them), else in the
    embedded SQLite file BOT_STATE_DIR/bot.sqlite3."""

    def __init__(self, config: Config) -> None:
        self._database: Database | None = None
        self._redis: CommandBatcher | None = None
        self.previews: PreviewStore
        self.audits: AuditStore
        if config.redis_url:
            self._redis = CommandBatcher(connect(config.redis_url, config.redis_tls_verify))
            self.previews = RedisPreviews(self._redis, config.client_id)
            self.audits = RedisAudit(self._redis, config.client_id)
        else:
            self._database = Database(Path(config.state_dir) / "bot.sqlite3")
            self._sqlite = (SqlitePreviews(self._database), SqliteAudit(self._database))
            self.previews, self.audits = self._sqlite

    async def open(self) -> None:
        if self._database is not None:
            await self._database.open()
            for store in self._sqlite:
                await store.open()

    async def close(self) -> None:
        if self._database is not None:
            await self._database.close()
        if self._redis is not None:
            await self._redis.aclose()
