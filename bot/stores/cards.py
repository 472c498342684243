"""The interactive cards the bot created: outTrackId -> what the card offered, whose, where it went, who used it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

import orjson

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


def row_offered(record: CardRecord, token: str, user: str) -> Offer | None:
    """The public row a token names, if it is one spelled as the card spelled it, and this user may press it (a row
    with a user is theirs only). "00" or a non-ASCII digit ("\u0660") names no row: each would also pass for a press
    not made before (the token is part of the press's key)."""
    index = int(token) if token.isascii() and token.isdigit() and len(token) <= 4 else -1  # no sign, no space
    if 0 <= index < len(record.rows) and row_token(index) == token:
        row = record.rows[index]
        return row if row.user in ("", user) else None
    return None


def private_token() -> str:
    return "u" + secrets.token_urlsafe(12)  # never a digit first: cannot be taken for a row


def offer_json(offer: Offer) -> bytes:
    return orjson.dumps([offer.command, offer.calendar_id, offer.name, offer.user])


def offer_from_json(raw: bytes | str) -> Offer:
    return Offer(*orjson.loads(raw))


class MemoryCards:
    """Cards of this process: for tests and tools only, since presses after a restart would find nothing."""

    def __init__(self) -> None:
        self._cards: dict[str, CardRecord] = {}
        self._offers: dict[tuple[str, str], Offer] = {}
        self._users: dict[str, set[str]] = {}

    async def save(self, track: str, record: CardRecord) -> None:
        self._cards[track] = record

    async def get(self, track: str) -> CardRecord | None:
        return self._cards.get(track)

    async def offer(self, track: str, offer: Offer) -> str:
        token = private_token()
        self._offers[track, token] = offer
        return token

    async def find(self, track: str, record: CardRecord, token: str, user: str) -> Offer | None:
        if token.isdigit():
            return row_offered(record, token, user)
        offer = self._offers.get((track, token))
        return offer if offer is not None and offer.user == user else None

    async def used_by(self, track: str, user: str) -> int:
        users = self._users.setdefault(track, set())
        users.add(user)
        return len(users)

    async def forget_organization(self, corp_id: str) -> int:
        gone = [track for track, record in self._cards.items() if record.chatbot_corp_id == corp_id]
        for track in gone:
            del self._cards[track]
            self._users.pop(track, None)
        self._offers = {key: offer for key, offer in self._offers.items() if key[0] not in gone}
        return len(gone)
