"""Users' own tokens (BOT_CALENDAR_TOKEN=user): calendar calls with the sender's token, refreshed with their sealed
refresh token; no grant, or consent withdrawn, raises ConsentNeeded."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson

from bot.auth.credentials import TOKEN_MARGIN_SECONDS, TOKEN_MIN_REUSE_SECONDS, Authorization, Authorizer, CachedToken
from bot.auth.sealing import Sealer, Unreadable
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.errors import QUOTA_EXHAUSTED, MalformedAnswer, Refused
from bot.models import Message
from bot.stores.grants import UserGrants
from bot.stores.keys import user_token
from bot.stores.tokens import TokenCache

T = TypeVar("T")
log = logging.getLogger("bot.user_tokens")


def reuse_seconds(lifetime: float) -> float:
    """How long a token is reused, as CachedToken does for a fetched one."""
    return max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2, TOKEN_MIN_REUSE_SECONDS)


class ConsentNeeded(Exception):
    """The sender has not connected their DingTalk account, or withdrew their consent: the connect card."""


def user_key(message: Message) -> str:
    """Whose token a message's calendar calls use: the sender's tenant key (organization and staff id)."""
    return message.tenant.key


def consent_withdrawn(error: Refused) -> bool:
    """A 403 on a call with the user's token that is not a limit: the user withdrew consent (reference §10.7) —
    unless DingTalk names a permission the token lacks (§4.2): connecting again would not grant it."""
    return error.status == 403 and not error.is_throttle and error.code != QUOTA_EXHAUSTED and not error.required_scopes


class UserTokens:
    """Each user's access token in the token cache (`user:<org>:<staff>`) and refresh token sealed in the user
    grants (SQLite or Redis: it survives restarts and is shared by dynos)."""

    def __init__(self, tokens: TokenCache, grants: UserGrants, sealer: Sealer, dingtalk: DingTalkClient) -> None:
        self._tokens = tokens
        self._grants = grants
        self._sealer = sealer
        self._dingtalk = dingtalk

    def cached(self, user: str) -> CachedToken:
        return CachedToken(user_token(user), self._tokens, lambda: self._refresh(user))

    async def keep(self, user: str, answer: dict[str, object]) -> None:
        """Store what userAccessToken answered after consent: the refresh token sealed, the access token cached."""
        access, lifetime = await self._store_grant(user, answer)
        await self._tokens.put(user_token(user), access, reuse_seconds(lifetime))

    async def _store_grant(self, user: str, answer: dict[str, object]) -> tuple[str, float]:
        access, refresh = answer.get("accessToken"), answer.get("refreshToken")
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise MalformedAnswer("no accessToken or refreshToken in the answer")
        await self._grants.put(user, self._sealer.seal(user, orjson.dumps({"refreshToken": refresh})))
        lifetime = answer.get("expireIn", 7200)
        valid = isinstance(lifetime, int | float) and not isinstance(lifetime, bool)
        return access, float(lifetime) if valid else 0.0  # type: ignore[arg-type]

    async def forget(self, user: str) -> bool:
        """Delete the user's tokens; whether they had a grant."""
        key = user_token(user)
        token = await self._tokens.get(key)
        if token:
            await self._tokens.drop(key, token)
        return await self._grants.delete(user)

    async def _refresh(self, user: str) -> tuple[str, float]:
        blob = await self._grants.get(user)
        if blob is None:
            raise ConsentNeeded
        try:
            refresh = orjson.loads(self._sealer.open(user, blob))["refreshToken"]
        except (Unreadable, ValueError, KeyError, TypeError):
            log.warning("a user's grant cannot be read (BOT_SECRET_KEY changed?): they are asked to connect again")
            await self._grants.delete(user)
            raise ConsentNeeded from None
        try:
            answer = await self._dingtalk.user_access_token({"grantType": "refresh_token", "refreshToken": refresh})
        except Refused as error:
            if 400 <= error.status < 500 and not error.is_throttle:  # any refusal: consent is needed again
                await self._grants.delete(user)
                raise ConsentNeeded from None
            raise
        return await self._store_grant(user, answer)  # DingTalk rotates refresh tokens: the newest is kept


class UserCredentials:
    """One user's calendar credentials: their cached token, refreshed when rejected; a 403 means consent is gone."""

    def __init__(self, user: str, tokens: UserTokens) -> None:
        self._user = user
        self._tokens = tokens

    async def authorized(self, call: Callable[[str], Awaitable[T]]) -> T:
        try:
            return await self._tokens.cached(self._user).authorized(call)
        except Refused as error:
            if error.status == 403 and error.required_scopes:
                fields = {"code": error.code, "scopes": list(error.required_scopes), "request_id": error.request_id}
                log.error("a user's token lacks a permission: grant it to the app's users", extra={"fields": fields})
            if not consent_withdrawn(error):
                raise
        log.info("consent withdrawn: the user is asked to connect again")
        await self._tokens.forget(self._user)
        raise ConsentNeeded


class UserAuthorizer:
    """Wraps the organization's authorizer: lookups and robot sends as before, calendar calls with the sender's own
    token."""

    def __init__(self, organization: Authorizer, tokens: UserTokens) -> None:
        self._organization = organization
        self._tokens = tokens

    async def authorize(self, message: Message) -> Authorization:
        authorization = await self._organization.authorize(message)
        calendar = UserCredentials(authorization.tenant.key, self._tokens)
        return Authorization(authorization.tenant, authorization.organization, calendar, authorization.scope)
