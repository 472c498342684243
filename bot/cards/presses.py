"""A press on an interactive card: checked against what the card offered, run as its presser's command, answered in
place (in the press's answer within DingTalk's window, else by PUT once that answer is out)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bot.auth.api import DingTalkApi
from bot.cards.delivery import unanswered
from bot.cards.interactive import BY_KEY, USED_BY, Interactive, private_data
from bot.commands.parse import command_text
from bot.dingtalk import before_send
from bot.dingtalk.errors import FAILURES, described
from bot.models import GROUP, Action, Message, Reply, Tenant
from bot.stores.cards import CardRecord, Offer

log = logging.getLogger("bot.presses")

ANSWER_SECONDS = 1.5  # DingTalk waits 2 s for a press's answer ([KB] CARD/0007): the rest is the ACK's way back
ACKED_WAIT_SECONDS = 5.0  # a PUT waits at most this long for its press's answer to be written (never before it)
FORGET_LATE_SECONDS = 60.0  # a press answered empty whose command never reaches in_place (dropped, taken elsewhere)
MAX_FIELD_CHARS = 256
Response = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Press:
    """The parts of a card callback the bot believes: who pressed (userId, corpId), which card, which button."""

    out_track_id: str
    corp_id: str
    user_id: str
    action: str
    token: str

    @property
    def key(self) -> str:
        """One press of one button of one card by one presser: a repeat (same frame, or pressed again) is the same."""
        parts = "\0".join((self.out_track_id, self.action, self.token, self.corp_id, self.user_id))
        return "card-" + hashlib.sha256(parts.encode()).hexdigest()[:40]


def read_press(data: dict[str, Any]) -> Press | None:
    """The press in a callback's data ([KB] CARD/0007: `content` is a JSON string holding cardPrivateData), or None
    when it is not one this bot's cards send."""
    if data.get("type") != "actionCallback":
        return None
    fields = [data.get(name) for name in ("outTrackId", "corpId", "userId", "content")]
    if not all(isinstance(value, str) and 0 < len(value) <= MAX_FIELD_CHARS * 16 for value in fields):
        return None
    try:
        content = orjson.loads(str(fields[3]))
    except ValueError:
        return None
    private = content.get("cardPrivateData") if isinstance(content, dict) else None
    params = private.get("params") if isinstance(private, dict) else None
    if not isinstance(params, dict):
        return None
    action, token = params.get("action"), params.get("token")
    texts = [*fields[:3], action, token]
    if not all(isinstance(text, str) and 0 < len(text) <= MAX_FIELD_CHARS for text in texts):
        return None
    return Press(str(fields[0]), str(fields[1]), str(fields[2]), str(action), str(token))


@dataclass(slots=True)
class _Waiter:
    """A press whose frame is still unanswered here: its command's result goes into the answer if it comes in time."""

    result: asyncio.Future[Response]
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    late: bool = False


class PressDesk:
    """The Stream transport's card callback handler (answer) and the app's in-place reply (in_place)."""

    def __init__(
        self, interactive: Interactive, add: Callable[[Message], Awaitable[bool]], *, per_organization: bool
    ) -> None:
        self.interactive = interactive
        self._add = add  # the intake: written down (journal), then queued; False for a repeat
        self._per_organization = per_organization
        self._waiting: dict[str, _Waiter] = {}
        self.refused = 0

    async def answer(self, data: dict[str, Any], frame_id: str) -> tuple[Response, Callable[[], None]]:
        """The press's answer (its `response`) within the window, and what to call once the ACK is written."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        message = await self._command(data, frame_id)
        if message is None:
            return {}, _nothing
        if message.key in self._waiting:  # the same press, still being answered: by its first frame only
            log.info("card press repeated, not acted on again", extra={"fields": {"stream_message_id": frame_id}})
            return {}, _nothing
        waiter = _Waiter(loop.create_future())
        self._waiting[message.key] = waiter
        if not await self._add(message):  # a repeat: answered once, by its first press
            self._waiting.pop(message.key, None)
            log.info("card press repeated, not acted on again", extra={"fields": {"stream_message_id": frame_id}})
            return {}, _nothing
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter.result), ANSWER_SECONDS - (loop.time() - started))
        if waiter.result.done():
            self._waiting.pop(message.key, None)
            return waiter.result.result(), waiter.acked.set
        waiter.late = True  # its result goes by PUT, once this empty answer is out
        loop.call_later(FORGET_LATE_SECONDS, self._waiting.pop, message.key, None)
        return {}, waiter.acked.set

    async def _command(self, data: dict[str, Any], frame_id: str) -> Message | None:
        """The presser's command, if the press names a card this bot created and a button that card offered them."""
        press = read_press(data)
        record = await self.interactive.store.get(press.out_track_id) if press is not None else None
        offer = None
        if press is not None and record is not None and may_press(press, record):
            offer = await self.interactive.store.find(press.out_track_id, record, press.token, press.user_id)
        if press is None or record is None or offer is None or offer.command != press.action:
            self.refused += 1
            why = "not a press" if press is None else "unknown card" if record is None else "not offered"
            # a colleague pressing someone's Confirm, a card older than the store keeps: ordinary, not an attack
            log.info("card press refused", extra={"fields": {"why": why, "stream_message_id": frame_id}})
            return None
        return _message(press, record, offer, self._per_organization)

    async def in_place(self, dingtalk: DingTalkApi, message: Message, reply: Reply, locale: str) -> str:
        """The presser's result on the card itself: their private data (with their Undo, if the reply offers one)
        and the public count of users; in the press's answer while it is open, else by PUT after it. "" when DingTalk
        refused the PUT: the caller then sends the result to the presser 1:1."""
        store, track, presser = self.interactive.store, message.card, message.sender_staff_id
        undo: tuple[Action, str] | None = None
        public: dict[str, str] = {}
        try:
            if reply.actions:
                action = reply.actions[0]
                token = await store.offer(track, Offer(action.command, action.calendar_id, action.name, presser))
                undo = (action, token)
            public["status"] = USED_BY[locale].format(await store.used_by(track, presser))
        except Exception:  # the command ran: its result still reaches the presser, without an Undo nothing keeps
            undo = None
            said = {"msg_id": message.msg_id}
            log.warning("card store unavailable: the result shown without its Undo", extra={"fields": said})
        private = private_data(reply, locale, undo)
        waiter = self._waiting.pop(message.key, None)
        if waiter is not None and not waiter.late and not waiter.result.done():
            step = before_send.current.get()
            if step is not None:
                await step.sending()  # the card step, as for any reply: a resumed press is not answered twice
            if not waiter.late and not waiter.result.done():  # the window can close during that write: then PUT
                response = {"cardUpdateOptions": BY_KEY, "cardData": {"cardParamMap": public}}
                waiter.result.set_result({**response, "userPrivateData": {"cardParamMap": private}})
                return "in-place:answer"
        if waiter is not None:  # "do not call the update API while handling a callback" ([KB] CARD/0007)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.acked.wait(), ACKED_WAIT_SECONDS)
        body = {
            "outTrackId": track,
            "cardData": {"cardParamMap": public},
            "privateData": {presser: {"cardParamMap": private}},
            "cardUpdateOptions": BY_KEY,
            "userIdType": 1,
        }
        try:
            await dingtalk.update_card(body)
        except FAILURES as error:
            if error.is_unanswered:
                return unanswered(message, "in-place:put", error)
            fields = {"msg_id": message.msg_id, **described(error)}
            log.warning("card update refused: the presser's result goes to them 1:1", extra={"fields": fields})
            return ""
        return "in-place:put"


def may_press(press: Press, record: CardRecord) -> bool:
    """Only a member of the card's organization (another's could act nowhere, yet would count among its users), and
    on a 1:1 card only its asker: no one else's press can come from that chat."""
    if record.chatbot_corp_id and press.corp_id != record.chatbot_corp_id:
        return False
    return (
        record.conversation_type == GROUP
        or record.owner == Tenant(record.chatbot_corp_id or press.corp_id, press.user_id).key
    )


def _message(press: Press, record: CardRecord, offer: Offer, per_organization: bool) -> Message:
    """The command a press stands for, from its presser: identity from the press's userId and corpId, the
    conversation and robot from the card's record, the command from what the card offered (never the press's data)."""
    return Message(
        msg_id=press.key,
        text=command_text(offer.command, offer.calendar_id, record.locale),
        msgtype="text",
        conversation_type=record.conversation_type,
        conversation_id=record.conversation_id,
        sender_staff_id=press.user_id,
        sender_union_id="",
        sender_id="",
        sender_corp_id=press.corp_id,
        chatbot_corp_id=record.chatbot_corp_id,
        session_webhook="",
        session_webhook_expires_ms=0,
        robot_code=record.robot_code,
        per_organization=per_organization,
        card=press.out_track_id,
    )


def _nothing() -> None:
    return None
