"""Interactive cards in the embedded database (BOT_STATE_DIR): presses are honoured after a restart of the one dyno."""

from __future__ import annotations

import sqlite3
import time

from bot.stores.cards import (
    CARD_SECONDS,
    CardRecord,
    Offer,
    offer_from_json,
    offer_json,
    private_token,
    row_offered,
)
from bot.stores.sqlite.database import Database


class SqliteCards:
    """In the embedded database (BOT_STATE_DIR): survives a restart of the one dyno."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self) -> None:
        """Create the tables unless they exist."""

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

    async def save(self, track: str, record: CardRecord) -> None:
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
        rows = await self._database.execute("SELECT record, expires_at FROM cards WHERE track = ?", (track,))
        if not rows or rows[0][1] <= time.time():
            return None
        return CardRecord.from_json(rows[0][0])

    async def offer(self, track: str, offer: Offer) -> str:
        token = private_token()
        await self._database.execute("INSERT INTO card_offers VALUES (?, ?, ?)", (track, token, offer_json(offer)))
        return token

    async def find(self, track: str, record: CardRecord, token: str, user: str) -> Offer | None:
        if token.isdigit():
            return row_offered(record, token, user)
        rows = await self._database.execute(
            "SELECT offer FROM card_offers WHERE track = ? AND token = ?", (track, token)
        )
        offer = offer_from_json(rows[0][0]) if rows else None
        return offer if offer is not None and offer.user == user else None

    async def used_by(self, track: str, user: str) -> int:

        def use(connection: sqlite3.Connection) -> int:
            connection.execute("INSERT OR IGNORE INTO card_users VALUES (?, ?)", (track, user))
            counted = connection.execute("SELECT COUNT(*) FROM card_users WHERE track = ?", (track,)).fetchone()
            return int(counted[0])

        return await self._database.transaction(use)

    async def forget_organization(self, corp_id: str) -> int:

        def forget(connection: sqlite3.Connection) -> int:
            of = "SELECT track FROM cards WHERE corp = ?"
            connection.execute(f"DELETE FROM card_offers WHERE track IN ({of})", (corp_id,))  # noqa: S608 - constant
            connection.execute(f"DELETE FROM card_users WHERE track IN ({of})", (corp_id,))  # noqa: S608 - constant
            return connection.execute("DELETE FROM cards WHERE corp = ?", (corp_id,)).rowcount

        return await self._database.transaction(forget)
