"""Admission in Redis, shared by every dyno: the message's claim and its sender's window in one script call."""

from __future__ import annotations

import uuid

from bot.models import Verdict
from bot.stores.dedupe import REMEMBER_SECONDS
from bot.stores.keys import KeyBuilder, of_organization
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import script, unlink_matching

# A message is claimed before its sender's command is counted: a copy that another dyno handles counts once.
_ADMIT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 'taken' end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], window)
  return 'allow'
end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', window) then return 'slow_down' end
return 'drop'
"""


class RedisAdmission:
    """Duplicate claims and per-sender windows in Redis, one script call per message."""

    def __init__(
        self,
        batcher: CommandBatcher,
        keys: KeyBuilder,
        user_rate: int,
        user_window: float = 60.0,
        dedupe_seconds: float = REMEMBER_SECONDS,
    ) -> None:
        self._batcher = batcher
        self._keys = keys
        self._arguments = (max(1, round(dedupe_seconds)), user_rate, max(1, round(user_window * 1000)))

    async def admit(self, msg_id: str, sender: str) -> Verdict:
        keys = [self._keys("msg", msg_id), self._keys("user", sender), self._keys("told", sender)]
        return Verdict(await script(self._batcher, _ADMIT, keys, *self._arguments, uuid.uuid4().hex))

    async def forget_organization(self, corp_id: str) -> int:
        """Its senders' windows and "told to slow down" notes (the claims of its messages expire by themselves)."""
        tenants = of_organization(corp_id)
        return await unlink_matching(
            self._batcher, self._keys.pattern("user", tenants), self._keys.pattern("told", tenants)
        )
