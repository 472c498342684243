"""Interactive cards (BOT_CARD_TEMPLATE_ID): a card with buttons created in its own conversation, updated in place."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import orjson

from bot.auth.api import DingTalkApi
from bot.auth.connect import CONNECT_LABELS
from bot.cards.delivery import unanswered
from bot.cards.render import button_label, render
from bot.config import CardTemplates
from bot.dingtalk.errors import FAILURES, Failure, Refused, described
from bot.models import Action, Message, Outcome, Reply
from bot.stores.cards import CardRecord, CardStore, Offer, row_token

log = logging.getLogger("bot.cards")

VALUE_BYTES = 1_024  # one cardParamMap value ([KB] API/0783); a Loop's rows are one value
BY_KEY = {"updateCardDataByKey": True, "updatePrivateDataByKey": True}
USED_BY = {"en": "👥 Used by {}", "zh_CN": "👥 已有 {} 人使用"}
NOT_DELIVERED = "deliverResultFalse"
OWN_ACTIONS = frozenset({"resubscribe", "confirm", "undo"})  # they undo or confirm what the asker did
_ELLIPSIS = "\n\n…"
# What the admin should do about each refusal, said once per process (the card falls back to today's each time).
_FIXES = {
    "Forbidden.AccessDenied.AccessTokenPermissionDenied": "add the permission Card.Instance.Write to the app "
    "(developer console → permissions), release a new version if asked",
    "param.templateNotExist": "BOT_CARD_TEMPLATE_ID names no template of this app: import "
    "templates/cards/calendar-card.json in the card platform, publish it and copy its id",
    "param.templateUnpublished": "publish the card template in the card platform (BOT_CARD_TEMPLATE_ID names an "
    "unpublished one)",
    "param.openDeliverModelError": "the robot cannot send this card: check that the template belongs to this app "
    "and the robot is enabled",
    NOT_DELIVERED: "DingTalk did not deliver the card to the conversation (deliverResults success false): check "
    "that the robot is in the group and the template belongs to this app",
}
# Refusals only the admin can fix: the card API is not asked again for that organization for a while (each ask is a
# call of the monthly quota and delays today's card), and a fix is picked up after this pause without a restart.
ADMIN_FIX_PAUSE_SECONDS = 300.0
_ADMIN_FIXES = frozenset(
    {"Forbidden.AccessDenied.AccessTokenPermissionDenied", "param.templateNotExist", "param.templateUnpublished"}
)
_OTHER_FIX = "DingTalk refused the card: check that BOT_CARD_TEMPLATE_ID is the published import of "
_OTHER_FIX += "templates/cards/calendar-card.json"
_NO_TEMPLATE_FIX = "import templates/cards/calendar-card.json in this organization's card platform, publish it and "
_NO_TEMPLATE_FIX += "add corpId=templateId to BOT_CARD_TEMPLATE_ID (or a bare id as every organization's default)"


class NotInteractive(Exception):
    """The card's rows do not fit a card value: today's card is sent instead."""


def public_data(reply: Reply, locale: str, asker: str) -> tuple[dict[str, str], tuple[Offer, ...]]:
    """The card's public variables (title, body, status, rows) and the offers its rows stand for: an undo or a
    confirmation is the asker's own (anyone else's press of it changes nothing), any other row is everyone's."""
    shown = render(Reply(reply.outcome, reply.data), locale)  # the body without today's links or buttons
    offers = tuple(
        Offer(action.command, action.calendar_id, action.name, asker if action.command in OWN_ACTIONS else "")
        for action in reply.actions
    )
    labels = [button_label(action, locale) for action in reply.actions]
    if len(set(labels)) < len(labels):  # two calendars shown alike: numbered, as the body numbers them
        labels = [f"{number}. {label}" for number, label in enumerate(labels, 1)]
    rows = [
        {"label": label, "action": action.command, "token": row_token(index)}
        for index, (label, action) in enumerate(zip(labels, reply.actions, strict=True))
    ]
    encoded = orjson.dumps(rows).decode()
    if len(encoded.encode()) > VALUE_BYTES:
        raise NotInteractive
    return {"title": shown.title, "body": fit(shown.markdown), "status": "", "rows": encoded}, offers


def private_data(reply: Reply, locale: str, undo: tuple[Action, str] | None) -> dict[str, str]:
    """The presser's own variables: their result (with their connect link when the command waits for their consent:
    the template's private button can only press, not open a page), and their Undo button (its action and token)
    when there is one."""
    markdown = render(Reply(reply.outcome, reply.data), locale).markdown
    link = ""
    if reply.outcome == Outcome.CONNECT_ACCOUNT:  # the bot's own URL, query encoded: no ")" or space in it
        link = f"\n\n[{CONNECT_LABELS[locale]}]({reply.data['connect_url']})"
    result = {"result": fit(markdown, VALUE_BYTES - len(link.encode())) + link, "has_undo": "false"}
    result.update(undo_label="", undo_action="", undo_token="")
    if undo is not None:
        action, token = undo
        result.update(has_undo="true", undo_label=button_label(action, locale), undo_action=action.command)
        result["undo_token"] = token
    return result


def fit(markdown: str, limit: int = VALUE_BYTES) -> str:
    """Markdown within one card value (or `limit` bytes of it): whole lines from the end dropped, and said so."""
    if len(markdown.encode()) <= limit:
        return markdown
    lines = markdown.split("\n")
    while lines and len(("\n".join(lines) + _ELLIPSIS).encode()) > limit:
        lines.pop()
    return "\n".join(lines) + _ELLIPSIS if lines else markdown.encode()[: limit - 4].decode(errors="ignore")


def deliver_body(message: Message, template_id: str, track: str, public: dict[str, str], robot: str) -> dict[str, Any]:
    """createAndDeliver's request ([KB] API/0783): in a group to the group, 1:1 to the robot chat; presses over
    Stream; user ids are staff ids (userIdType 1), as the press's userId then is."""
    body: dict[str, Any] = {
        "cardTemplateId": template_id,
        "outTrackId": track,
        "callbackType": "STREAM",
        "cardData": {"cardParamMap": public},
        "userIdType": 1,
    }
    if message.is_group:
        body["openSpaceId"] = f"dtv1.card//IM_GROUP.{message.conversation_id}"
        body["imGroupOpenSpaceModel"] = {"supportForward": False}
        body["imGroupOpenDeliverModel"] = {"robotCode": robot}
    else:
        body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{message.sender_staff_id}"
        body["imRobotOpenSpaceModel"] = {"supportForward": False}
        body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": robot}
    return body


def check_delivered(answer: dict[str, Any]) -> None:
    """An HTTP 200 can still say a space was not delivered to (deliverResults[].success false)."""
    result = answer.get("result")
    results = result.get("deliverResults") if isinstance(result, dict) else None
    if not isinstance(results, list) or not results:
        raise Refused(200, NOT_DELIVERED, "no deliverResults in the answer")
    for each in results:
        if not isinstance(each, dict) or each.get("success") is not True:
            problem = str(each.get("errorMsg", ""))[:200] if isinstance(each, dict) else ""
            raise Refused(200, NOT_DELIVERED, problem)


class Interactive:
    """Sends a reply that has buttons as an interactive card, keeping what it offered (CardStore) first; says once
    per problem what the admin should fix when DingTalk refuses it (its caller then sends today's card)."""

    def __init__(self, templates: CardTemplates, store: CardStore, robot_code: str) -> None:
        self.templates = templates
        self.store = store
        self._robot_code = robot_code  # an internal app's AppKey; "" for an ISV app, whose robot is the message's
        self._told: set[tuple[str, str]] = set()  # (organization, problem): each said once
        self._untemplated: set[str] = set()  # organizations told they have no template id
        self._paused_until: dict[str, float] = {}  # organization → when to ask the card API again (_ADMIN_FIXES)

    async def deliver(self, dingtalk: DingTalkApi, message: Message, reply: Reply, locale: str) -> str:
        """The route taken ("card", or "card:unanswered"), or "" when today's card must be sent instead."""
        organization = message.tenant.organization
        template_id = self.templates.for_organization(organization)  # a template is its organization's own
        if not template_id:
            self.no_template(message, organization)
            return ""
        if self._paused_until.get(organization, 0.0) > time.monotonic():
            return ""
        try:
            public, offers = public_data(reply, locale, message.sender_staff_id)
        except NotInteractive:
            log.info("card too large to be interactive: sent as before", extra={"fields": {"msg_id": message.msg_id}})
            return ""
        robot = message.robot_code or self._robot_code
        if not robot:
            return ""
        track = secrets.token_urlsafe(18)  # fresh per card: a reused outTrackId is silently ignored ([KB] API/0790)
        owner = message.tenant.key
        conversation = (message.conversation_id, message.conversation_type, message.chatbot_corp_id)
        record = CardRecord(owner, *conversation, robot, locale, offers)
        try:
            await self.store.save(track, record)  # before the card exists: a press can come at once
        except Exception:  # a card whose presses could not be honoured is not sent: today's card instead
            log.warning("card store unavailable: today's card sent", extra={"fields": {"msg_id": message.msg_id}})
            return ""
        body = deliver_body(message, template_id, track, public, robot)
        try:
            check_delivered(await dingtalk.create_and_deliver_card(body))
        except FAILURES as error:  # CardHeldBack is not one: the card then goes nowhere, by no route
            if error.is_unanswered:
                return unanswered(message, "card", error)
            self.refused(message, organization, template_id, error)
            return ""
        return "card"

    def no_template(self, message: Message, organization: str) -> None:
        fields = {"msg_id": message.msg_id, "corp_id": organization, "fix": _NO_TEMPLATE_FIX}
        if organization in self._untemplated:
            log.debug("no card template for this organization, today's card sent", extra={"fields": fields})
            return
        self._untemplated.add(organization)
        log.error("no card template for this organization, today's cards sent there", extra={"fields": fields})

    def refused(self, message: Message, organization: str, template_id: str, error: Failure) -> None:
        fix = _FIXES.get(error.code, _OTHER_FIX)
        if error.code in _ADMIN_FIXES:
            self._paused_until[organization] = time.monotonic() + ADMIN_FIX_PAUSE_SECONDS
        fields = {"msg_id": message.msg_id, "corp_id": organization, "template": template_id, **described(error)}
        fields["fix"] = fix
        if (organization, error.code) in self._told:
            log.debug("interactive card refused, today's card sent", extra={"fields": fields})
            return
        self._told.add((organization, error.code))
        log.error("interactive card refused, today's card sent instead", extra={"fields": fields})
