"""The interactive cards the bot created: outTrackId -> what the card offered, whose, where it went, who used it."""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Protocol

import orjson

from bot.stores.redis.batch import CommandBatcher
from bot.stores.sqlite.database import Database

CARD_SECONDS = 7 * 86_400.0  # a press on an older card changes nothing (the card itself stays in the chat)


@dataclass(frozen=True, slots=True)
class Offer:
    """One button a card offered: a command on one calendar (or a bulk token); `user` set: that presser's only."""

    command: str
    calendar_id: str
    name: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class CardRecord:
    """What a press is checked against, and what its command runs with (never the press's own data)."""

    owner: str  # organization:staffId of whoever asked for the card
    conversation_id: str
    conversation_type: str
    chatbot_corp_id: str
    robot_code: str
    locale: str
    rows: tuple[Offer, ...]  # the public rows; a row's token is its index

    def to_json(self) -> bytes:
        fields = [self.owner, self.conversation_id, self.conversation_type, self.chatbot_corp_id, self.robot_code]
        rows = [[row.command, row.calendar_id, row.name, row.user] for row in self.rows]
        return orjson.dumps([*fields, self.locale, rows])

    @staticmethod
    def from_json(raw: bytes | str) -> CardRecord:
        owner, conversation, kind, corp, robot, locale, rows = orjson.loads(raw)
        return CardRecord(owner, conversation, kind, corp, robot, locale, tuple(Offer(*row) for row in rows))


class CardStore(Protocol):
    """Durable: a press arrives after a restart, or on another dyno. `offer` adds a presser's own button (their
    Undo) and answers its token; `find` answers the offer behind a token only for a presser it was made for."""

    async def save(self, track: str, record: CardRecord) -> None: ...

    async def get(self, track: str) -> CardRecord | None: ...

    async def offer(self, track: str, offer: Offer) -> str: ...

    async def find(self, track: str, record: CardRecord, token: str, user: str) -> Offer | None: ...

    async def used_by(self, track: str, user: str) -> int: ...

    async def forget_organization(self, corp_id: str) -> int:
        """Forget the cards sent in the organization (it removed the app); how many."""
        ...


def row_token(index: int) -> str:
    return str(index)


def _row(record: CardRecord, token: str, user: str) -> Offer | None:
    if token.isdigit() and len(token) <= 4 and int(token) < len(record.rows):  # isdigit: no sign, no space
        row = record.rows[int(token)]
        return row if row.user in ("", user) else None
    return None


def _private_token() -> str:
    return "u" + secrets.token_urlsafe(12)  # never a digit first: cannot be taken for a row


class SqliteCards:
    """In the embedded database (BOT_STATE_DIR): survives a restart of the one dyno."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._created = False

    async def _create(self) -> None:
        if self._created:
            return

        def create(connection: sqlite3.Connection) -> None:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS cards (track TEXT PRIMARY KEY, record BLOB, expires_at REAL, corp TEXT)"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS card_offers"
                " (track TEXT, token TEXT, offer BLOB, PRIMARY KEY (track, token))"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS card_users (track TEXT, user TEXT, PRIMARY KEY (track, user))"
            )

        await self._database.transaction(create)
        self._created = True

    async def save(self, track: str, record: CardRecord) -> None:
        await self._create()
        now = time.time()

        def save(connection: sqlite3.Connection) -> None:
            gone = "SELECT track FROM cards WHERE expires_at <= ?"
            connection.execute(f"DELETE FROM card_offers WHERE track IN ({gone})", (now,))  # noqa: S608 - constant
            connection.execute(f"DELETE FROM card_users WHERE track IN ({gone})", (now,))  # noqa: S608 - constant
            connection.execute("DELETE FROM cards WHERE expires_at <= ?", (now,))
            row = (track, record.to_json(), now + CARD_SECONDS, record.chatbot_corp_id)
            connection.execute("INSERT INTO cards VALUES (?, ?, ?, ?)", row)

        await self._database.transaction(save)

    async def get(self, track: str) -> CardRecord | None:
        await self._create()
        rows = await self._database.execute("SELECT record, expires_at FROM cards WHERE track = ?", (track,))
        if not rows or rows[0][1] <= time.time():
            return None
        return CardRecord.from_json(rows[0][0])

    async def offer(self, track: str, offer: Offer) -> str:
        await self._create()
        token = _private_token()
        value = orjson.dumps([offer.command, offer.calendar_id, offer.name, offer.user])
        await self._database.execute("INSERT INTO card_offers VALUES (?, ?, ?)", (track, token, value))
        return token

    async def find(self, track: str, record: CardRecord, token: str, user: str) -> Offer | None:
        if token.isdigit():
            return _row(record, token, user)
        await self._create()
        rows = await self._database.execute(
            "SELECT offer FROM card_offers WHERE track = ? AND token = ?", (track, token)
        )
        offer = Offer(*orjson.loads(rows[0][0])) if rows else None
        return offer if offer is not None and offer.user == user else None

    async def used_by(self, track: str, user: str) -> int:
        await self._create()

        def use(connection: sqlite3.Connection) -> int:
            connection.execute("INSERT OR IGNORE INTO card_users VALUES (?, ?)", (track, user))
            counted = connection.execute("SELECT COUNT(*) FROM card_users WHERE track = ?", (track,)).fetchone()
            return int(counted[0])

        return await self._database.transaction(use)

    async def forget_organization(self, corp_id: str) -> int:
        await self._create()

        def forget(connection: sqlite3.Connection) -> int:
            of = "SELECT track FROM cards WHERE corp = ?"
            connection.execute(f"DELETE FROM card_offers WHERE track IN ({of})", (corp_id,))  # noqa: S608 - constant
            connection.execute(f"DELETE FROM card_users WHERE track IN ({of})", (corp_id,))  # noqa: S608 - constant
            return connection.execute("DELETE FROM cards WHERE corp = ?", (corp_id,)).rowcount

        return await self._database.transaction(forget)


class RedisCards:
    """In Redis (REDIS_URL): shared by every dyno; Redis expires them."""

    def __init__(self, redis: CommandBatcher, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"calbot:{namespace}:card:"
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
        token = _private_token()
        key = f"{self._prefix}{track}:offers"
        value = orjson.dumps([offer.command, offer.calendar_id, offer.name, offer.user])
        await self._redis.send("HSET", key, token, value)
        await self._redis.send("PEXPIRE", key, self._milliseconds)
        return token

    async def find(self, track: str, record: CardRecord, token: str, user: str) -> Offer | None:
        if token.isdigit():
            return _row(record, token, user)
        raw = await self._redis.send("HGET", f"{self._prefix}{track}:offers", token)
        offer = Offer(*orjson.loads(raw)) if raw is not None else None
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
        gone = int(await self._redis.send("UNLINK", *keys)) if keys else 0
        await self._redis.send("UNLINK", organization)
        return gone


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def card_store(database: Database | None, redis: CommandBatcher | None, namespace: str) -> CardStore:
    """Beside the other stores: Redis when REDIS_URL is set, else the embedded database."""
    if redis is not None:
        return RedisCards(redis, namespace)
    assert database is not None
    return SqliteCards(database)
