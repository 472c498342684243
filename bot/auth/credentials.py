"""Credentials per message: which token its calls use, cached under a key, fetched by one caller at a time and
fetched again once when DingTalk rejects it. Today one kind: the internal app's own token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bot.dingtalk.credentials import Credentials
from bot.dingtalk.errors import FAILURES, DingTalkError
from bot.models import Message, Tenant
from bot.stores.keys import APP_TOKEN
from bot.stores.tokens import TokenCache

T = TypeVar("T")
TOKEN_MARGIN_SECONDS = 300  # refresh this long before DingTalk says the token expires, as the SDK does
# however short a lifetime DingTalk announces (`expireIn: 0`), a token is reused this long: not one fetch per call
# (if DingTalk rejects it sooner, it is dropped and fetched again, as always)
TOKEN_MIN_REUSE_SECONDS = 60.0

# Asks DingTalk for a new token: the token and the lifetime DingTalk announced, in seconds.
TokenFetch = Callable[[], Awaitable[tuple[str, float]]]


class CachedToken:
    """A token kept in the token cache under `key` (shared between dynos when the cache is), fetched with `fetch`
    by one caller at a time when missing or rejected."""

    def __init__(self, key: str, tokens: TokenCache, fetch: TokenFetch) -> None:
        self.key = key
        self._tokens = tokens
        self._fetch = fetch

    async def token(self) -> str:
        token = await self._tokens.get(self.key)
        if token:
            return token
        async with self._tokens.fetching(self.key):  # the others wait here, then reuse what it stored
            token = await self._tokens.get(self.key)
            if token:
                return token
            token, lifetime = await self._fetch()
            reuse = max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2, TOKEN_MIN_REUSE_SECONDS)
            await self._tokens.put(self.key, token, reuse)
            return token

    async def authorized(self, call: Callable[[str], Awaitable[T]]) -> T:
        """A failure to get the token is the call's, marked as one that did not send it; the call's failure after a
        rejected token carries what its tries before the rejection left unknown (one may have been carried out)."""
        # the cached token read here (every call but the first per token): token() is one coroutine more per call
        token = await self._tokens.get(self.key) or await self._token_for(None)
        try:
            return await call(token)
        except DingTalkError as error:
            if not error.is_token_rejected:
                raise
            rejected = error
        await self._tokens.drop(self.key, token)
        token = await self._token_for(rejected)
        try:
            return await call(token)
        except FAILURES as error:
            error.after_unanswered = error.after_unanswered or rejected.after_unanswered
            raise

    async def _token_for(self, rejected: DingTalkError | None) -> str:
        try:
            return await self.token()
        except FAILURES as error:
            error.before_the_call = True
            error.after_unanswered = rejected is not None and rejected.after_unanswered
            raise


@dataclass(frozen=True, slots=True)
class Authorization:
    """Who one message's calls act for, with their credentials (bolt's AuthorizeResult): the tenant (organization,
    staff id, unionId when known), its organization's credentials for looking up users and for robot sends, and
    those its calendar calls act with (the same, unless users act with their own tokens)."""

    tenant: Tenant
    organization: Credentials
    calendar: Credentials
    scope: str = ""  # whose per-API limits the calls count against: "" the app's, else an organization's (ISV)


class Authorizer(Protocol):
    async def authorize(self, message: Message) -> Authorization:
        """The credentials for this message's calls; no call to DingTalk is made until one is needed."""
        ...


class AppAuthorizer:
    """An internal app: every message, whichever organization member sent it, uses the app's own token."""

    def __init__(self, tokens: TokenCache, fetch_app_token: TokenFetch) -> None:
        self._app_token = CachedToken(APP_TOKEN, tokens, fetch_app_token)

    async def authorize(self, message: Message) -> Authorization:
        return Authorization(message.tenant, organization=self._app_token, calendar=self._app_token)
