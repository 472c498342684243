"""Deliver a Card to a conversation: the sessionWebhook while it is valid and trusted, else the robot OpenAPI."""

from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

from bot.auth.api import DingTalkApi
from bot.dingtalk import budget
from bot.dingtalk.errors import FAILURES, Failure, described
from bot.models import Card, Message

WEBHOOK_MARGIN_MS = 10_000  # do not start a post to a webhook that expires while it is under way
DINGTALK_WEBHOOK_HOSTS = frozenset({"oapi.dingtalk.com", "api.dingtalk.com", "oapi.dingtalk.io", "api.dingtalk.io"})
FALLBACK_SHARE = 0.5  # of the reply's budget, kept for the robot OpenAPI while the webhook (or private send) is tried
_MENTIONABLE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
log = logging.getLogger("bot.replies")


# a URL that starts so is on one of these hosts by https and the default port, whatever follows the slash
_DINGTALK_WEBHOOK_STARTS = tuple(f"https://{host}/" for host in sorted(DINGTALK_WEBHOOK_HOSTS))


def webhook_is_trusted(url: str, oapi_base: str) -> bool:
    """True when the URL points at DingTalk itself (or the configured OAPI host), never elsewhere; a URL that does not
    parse (a bad port, a control character) is not trusted. The usual webhooks are told by how they start, as
    urlsplit would tell them (parsing one costs 40-50 k instructions, about 1.5 % of a command); the tests compare."""
    if _CONTROL.search(url):
        return False
    if url.startswith(_DINGTALK_WEBHOOK_STARTS) or url.startswith(_configured_start(oapi_base)):
        return True
    return trusted_by_parts(url, oapi_base)


def trusted_by_parts(url: str, oapi_base: str) -> bool:
    """The rule as urlsplit's parts say it (what the starts above tell without parsing; the tests compare both)."""
    try:
        parts, configured = urlsplit(url), urlsplit(oapi_base)
        if parts.scheme == configured.scheme and parts.netloc == configured.netloc:
            return True
        return parts.scheme == "https" and parts.port is None and (parts.hostname or "") in DINGTALK_WEBHOOK_HOSTS
    except ValueError:
        return False


@functools.lru_cache(maxsize=4)
def _configured_start(oapi_base: str) -> tuple[str, ...]:
    """How a URL on the configured OAPI host starts: its scheme and netloc as urlsplit finds them, then a slash (a URL
    that starts so has that scheme and netloc, whatever follows); none if the configured URL has no host."""
    try:
        parts = urlsplit(oapi_base)
    except ValueError:
        return ()
    return (f"{parts.scheme}://{parts.netloc}/",) if parts.scheme and parts.netloc else ()


def webhook_body(card: Card, mention_staff_id: str = "") -> dict[str, Any]:
    """The sessionWebhook JSON for a card: markdown without buttons, ActionCard with them."""
    text = card.markdown
    body: dict[str, Any]
    if mention_staff_id and _MENTIONABLE.match(mention_staff_id):
        text = f"{text}\n\n@{mention_staff_id}"
        body = {"at": {"atUserIds": [mention_staff_id], "isAtAll": False}}
    else:
        body = {}
    buttons = card.buttons
    if not buttons:
        return {"msgtype": "markdown", "markdown": {"title": card.title, "text": text}, **body}
    action_card = {
        "title": card.title,
        "text": text,
        "btnOrientation": "0",
        "btns": [{"title": button.title, "actionURL": button.url} for button in buttons],
    }
    return {"msgtype": "actionCard", "actionCard": action_card, **body}


def robot_message(card: Card) -> tuple[str, dict[str, str]]:
    """The robot OpenAPI msgKey and msgParam for a card (the OpenAPI cannot @-mention)."""
    buttons = card.buttons
    param = {"title": card.title, "text": card.markdown}
    if not buttons:
        return "sampleMarkdown", param
    if len(buttons) == 1:
        return "sampleActionCard", {**param, "singleTitle": buttons[0].title, "singleURL": buttons[0].url}
    for number, button in enumerate(buttons, start=1):
        param[f"actionTitle{number}"] = button.title
        param[f"actionURL{number}"] = button.url
    return f"sampleActionCard{len(buttons)}", param


async def deliver(dingtalk: DingTalkApi, message: Message, card: Card, oapi_base: str) -> str:
    """Send the card where the message came from; returns the route taken: "webhook", "openapi" (no usable
    webhook) or "webhook-failed:openapi", with ":unanswered" when its send got no answer. The webhook may use only
    part of the budget: the rest is the fallback's. A send that got no answer may have been delivered: it is never
    followed by another copy, by any route."""
    route = "openapi"
    webhook_valid = message.session_webhook_expires_ms > time.time() * 1000 + WEBHOOK_MARGIN_MS
    if webhook_valid and webhook_is_trusted(message.session_webhook, oapi_base):
        mention = message.sender_staff_id if message.is_group else ""
        try:
            with budget.keeping(FALLBACK_SHARE):
                await dingtalk.post_session_webhook(message.session_webhook, webhook_body(card, mention))
            return "webhook"
        except FAILURES as error:  # refused, or surely not taken: the OpenAPI still reaches the conversation
            if error.is_unanswered:
                return unanswered(message, "webhook", error)
            fields = {"msg_id": message.msg_id, **described(error)}
            log.warning("webhook reply failed, sending through the robot OpenAPI", extra={"fields": fields})
            route = "webhook-failed:openapi"
    msg_key, msg_param = robot_message(card)
    try:
        if message.is_group:
            await dingtalk.send_to_group(message.conversation_id, message.robot_code, msg_key, msg_param)
        else:
            await dingtalk.send_to_user(message.sender_staff_id, message.robot_code, msg_key, msg_param)
    except FAILURES as error:
        if error.is_unanswered:
            return unanswered(message, route, error)
        raise
    return route


async def deliver_privately(dingtalk: DingTalkApi, message: Message, card: Card, notice: Card, oapi_base: str) -> str:
    """A card with buttons, asked for in a group: to the sender 1:1, since a button pressed in a group posts its
    command without @-mentioning the bot; the group gets a short notice. If the private send fails (or DingTalk
    answers that it did not deliver it), the group gets the card itself; if it got no answer, nothing more is sent."""
    msg_key, msg_param = robot_message(card)
    try:
        with budget.keeping(FALLBACK_SHARE):
            await dingtalk.send_to_user(message.sender_staff_id, message.robot_code, msg_key, msg_param)
    except FAILURES as error:  # CardHeldBack is not one: the card then goes nowhere, by no route
        if error.is_unanswered:
            return unanswered(message, "private", error)
        fields = {"msg_id": message.msg_id, **described(error)}
        log.warning("private reply failed, answering in the group", extra={"fields": fields})
        return "group-fallback:" + await deliver(dingtalk, message, card, oapi_base)
    return "private+" + await deliver(dingtalk, message, notice, oapi_base)


def unanswered(message: Message, route: str, error: Failure) -> str:
    """The one line for a card whose send got no answer: DingTalk may have it, so it is not sent again (two cards
    would be worse than a missing one); the command is finished."""
    fields = {"msg_id": message.msg_id, "route": route, "reply_code": error.code}
    log.warning("card unanswered: it may have been delivered, so it is not sent again", extra={"fields": fields})
    return f"{route}:unanswered"
