"""Connecting a user's DingTalk account (OAuth): the authorize link with its signed single-use state, and the
callback that checks it, exchanges the code, accepts only the sender's own account and hands back the pending
command."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson

from bot.auth.sealing import Sealer, State, Unreadable
from bot.auth.user_tokens import UserTokens, user_key
from bot.config import Config
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.errors import FAILURES, described
from bot.models import ONE_TO_ONE, Button, Card, Message
from bot.stores.grants import UserGrants
from bot.stores.keys import pending_connect

CONNECT_SECONDS = 600  # a connect link works this long (DingTalk's authorization codes themselves are short-lived)
MAX_PENDING_TEXT = 4_096  # a longer command is not kept: after connecting, the user sends it again
CONNECT_LABELS = {"en": "Connect my account", "zh_CN": "连接我的钉钉账号"}
log = logging.getLogger("bot.connect")


def with_connect_button(card: Card, url: str, locale: str) -> Card:
    """The connect card with its one button: the authorize link (the bot's own, never text anyone typed)."""
    return Card(card.title, card.markdown, (Button(CONNECT_LABELS[locale], url),), interactive=True)


@dataclass(frozen=True, slots=True)
class Completed:
    """What the callback came to: the page the browser gets (its template), in which language, and the command to
    run now (None unless the account was connected)."""

    page: str  # "connected", "forged", "expired", "used", "foreign" or "failed"
    locale: str
    pending: Message | None = None


class Connector:
    """Offers the connect link for a message's sender and completes it when DingTalk redirects the browser back."""

    def __init__(
        self, config: Config, grants: UserGrants, sealer: Sealer, tokens: UserTokens, dingtalk: DingTalkClient
    ) -> None:
        self._config = config
        self._grants = grants
        self._sealer = sealer
        self._tokens = tokens
        self._dingtalk = dingtalk

    async def offer(self, message: Message, text: str, locale: str, union_id: str) -> str:
        """A new authorize URL for the sender; the command waits for their consent, in place of any before it."""
        user = user_key(message)
        state = self._sealer.sign(user, CONNECT_SECONDS)
        pending = {
            "nonce": state.nonce,
            "union_id": union_id,
            "text": text if len(text) <= MAX_PENDING_TEXT else "",
            "locale": locale,
            "robot_code": message.robot_code,
            "staff_id": message.sender_staff_id,
            "sender_corp_id": message.sender_corp_id,
            "chatbot_corp_id": message.chatbot_corp_id,
            "per_organization": message.per_organization,
        }
        sealed = self._sealer.seal(pending_connect(user), orjson.dumps(pending))
        await self._grants.put(pending_connect(user), sealed, expires_in=CONNECT_SECONDS)  # dies with its state
        query = {
            "redirect_uri": f"{self._config.public_url}/oauth/callback",
            "response_type": "code",
            "client_id": self._config.oauth_client_id,
            "scope": "openid",
            "state": self._sealer.encode(state),
            "prompt": "consent",
        }
        return f"{self._config.login_base}/oauth2/auth?{urlencode(query)}"

    async def complete(self, code: str, state_text: str, browser_locale: str) -> Completed:
        """Check the state (signed, unexpired, unused), then the account (the sender's own): only then is anything
        stored, and the pending command returned."""
        state = self._sealer.decode(state_text)
        if state is None:
            return self._refused("forged", browser_locale)
        pending = await self._pending(state)
        locale = str(pending["locale"]) if pending else browser_locale
        if state.expires_at < time.time():
            return self._refused("expired", locale)
        if pending is None or not code:
            return self._refused("used" if pending is None else "failed", locale)
        if not await self._grants.delete(pending_connect(state.user)):  # single use: one callback gets it
            return self._refused("used", locale)
        try:
            answer = await self._dingtalk.user_access_token({"grantType": "authorization_code", "code": code})
            access = answer.get("accessToken")
            union_id = await self._dingtalk.own_union_id(access if isinstance(access, str) else "")
        except FAILURES as error:
            log.warning("connecting an account failed", extra={"fields": described(error)})
            return Completed("failed", locale)
        if union_id != pending["union_id"]:
            return self._refused("foreign", locale)
        try:
            await self._tokens.keep(state.user, answer)
        except FAILURES as error:
            log.warning("connecting an account failed", extra={"fields": described(error)})
            return Completed("failed", locale)
        log.info("account connected", extra={"fields": {"staff_id": pending["staff_id"]}})
        pending_message = _message(state, pending) if pending["text"] else None
        return Completed("connected", locale, pending_message)

    async def _pending(self, state: State) -> dict[str, object] | None:
        """The command waiting for this state's user, if it is this state's (a newer link replaces an older one)."""
        key = pending_connect(state.user)
        blob = await self._grants.get(key)
        if blob is None:
            return None
        try:
            pending: dict[str, object] = orjson.loads(self._sealer.open(key, blob))
        except (Unreadable, ValueError):
            return None
        return pending if pending.get("nonce") == state.nonce else None

    @staticmethod
    def _refused(page: str, locale: str) -> Completed:
        log.warning("connect callback refused: nothing stored", extra={"fields": {"reason": page}})
        return Completed(page, locale)


def _message(state: State, pending: dict[str, object]) -> Message:
    """The pending command as a 1:1 message from its sender, answered through the robot OpenAPI (no webhook)."""
    return Message(
        msg_id=f"connect-{state.nonce}",
        text=str(pending["text"]),
        msgtype="text",
        conversation_type=ONE_TO_ONE,
        conversation_id="",
        sender_staff_id=str(pending["staff_id"]),
        sender_union_id=str(pending["union_id"]),
        sender_id="",
        sender_corp_id=str(pending["sender_corp_id"]),
        chatbot_corp_id=str(pending["chatbot_corp_id"]),
        session_webhook="",
        session_webhook_expires_ms=0,
        robot_code=str(pending["robot_code"]),
        per_organization=pending.get("per_organization") is True,  # as the app type kept the original apart
    )
