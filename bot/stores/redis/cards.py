"""Interactive cards in Redis (REDIS_URL): shared by every dyno, so a press is honoured on any of them; Redis expires
them."""

from __future__ import annotations

from bot.stores.cards import (
    CARD_SECONDS,
    CardRecord,
    Offer,
    offer_from_json,
    offer_json,
    private_token,
    row_offered,
)
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import unlink

CONCERN = "card"


class RedisCards:
    """In Redis (REDIS_URL): shared by every dyno; Redis expires them."""

    def __init__(self, redis: CommandBatcher, keys: KeyBuilder) -> None:
        self._redis = redis
        self._prefix = keys.concern(CONCERN)
        self._milliseconds = int(CARD_SECONDS * 1000)

    async def save(self, track: str, record: CardRecord) -> None:
        await self._redis.send("SET", self._prefix + track, record.to_json(), "PX", self._milliseconds)
        organization = f"{self._prefix}of:{record.chatbot_corp_id}"  # the organization's cards, to forget them
        await self._redis.send("SADD", organization, track)
        await self._redis.send("PEXPIRE", organization, self._milliseconds)

    async def get(self, track: str) -> CardRecord | None:
        raw = await self._redis.send("GET", self._prefix + track)
        return CardRecord.from_json(raw) if raw is not None else None

    async def offer(self, track: str, offer: Offer) -> str:
        token = private_token()
        key = f"{self._prefix}{track}:offers"
        await self._redis.send("HSET", key, token, offer_json(offer))
        await self._redis.send("PEXPIRE", key, self._milliseconds)
        return token

    async def find(self, track: str, record: CardRecord, token: str, user: str) -> Offer | None:
        if token.isdigit():
            return row_offered(record, token, user)
        raw = await self._redis.send("HGET", f"{self._prefix}{track}:offers", token)
        offer = offer_from_json(raw) if raw is not None else None
        return offer if offer is not None and offer.user == user else None

    async def used_by(self, track: str, user: str) -> int:
        key = f"{self._prefix}{track}:users"
        await self._redis.send("SADD", key, user)
        await self._redis.send("PEXPIRE", key, self._milliseconds)
        return int(await self._redis.send("SCARD", key))

    async def forget_organization(self, corp_id: str) -> int:
        organization = f"{self._prefix}of:{corp_id}"
        tracks = await self._redis.send("SMEMBERS", organization)
        keys = [f"{self._prefix}{_text(track)}{part}" for track in tracks for part in ("", ":offers", ":users")]
        gone = await unlink(self._redis, *keys) if keys else 0
        await unlink(self._redis, organization)
        return gone


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
