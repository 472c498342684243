"""A third-party enterprise (ISV) app: each organization's token from the latest suite ticket, and the suite's events
(the ticket, organizations authorizing, changing and removing the app)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.auth.credentials import Authorization, CachedToken
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.errors import NotReady, OrganizationUnnamed, Refused
from bot.models import Event, Message
from bot.stores.build import Stores
from bot.stores.dedupe import RecentIds
from bot.stores.keys import organization_token
from bot.stores.suite_tickets import SuiteTickets
from bot.stores.tokens import TokenCache

log = logging.getLogger("bot.isv")
MAX_TICKET_CHARS = 1024  # DingTalk's tickets are about 100 characters; anything longer is not one
MAX_EVENTS_REMEMBERED = 10_000  # eventIds kept to skip repeats (a few events an hour per organization)
RELIEVED_POLL_SECONDS = 5.0  # how soon the other dynos drop their copies of a removed organization's data
EVENT_SECONDS = 2.0  # an event's work before its ACK; DingTalk waits 3 s, then pushes it again
# (no "ticket" before a space or colon in a log line: the log redactor would take what follows for a ticket)
RE_PUSH_ADVICE = "re-push it from the developer console (the app's Stream settings)"


class IsvAuthorizer:
    """Every message uses the token of the organization its robot is in (`chatbotCorpId`), fetched with the suite's
    latest ticket, cached per organization, one fetch at a time per organization."""

    def __init__(self, suite_key: str, tokens: TokenCache, tickets: SuiteTickets, dingtalk: DingTalkClient) -> None:
        self._suite_key = suite_key
        self._tokens = tokens
        self._tickets = tickets
        self._dingtalk = dingtalk
        self.fetches = 0  # corpAccessToken calls made: what the benchmark checks

    async def authorize(self, message: Message) -> Authorization:
        corp_id = message.chatbot_corp_id
        token = CachedToken(organization_token(corp_id), self._tokens, lambda: self._fetch(corp_id))
        return Authorization(message.tenant, organization=token, calendar=token, scope=corp_id)

    async def _fetch(self, corp_id: str) -> tuple[str, float]:
        if not corp_id:  # DingTalk names the organization in every ISV callback; without it there is no token
            raise OrganizationUnnamed
        ticket = await self._tickets.latest(self._suite_key)
        if ticket is None:
            log.error(
                f"no organization token without a suite ticket; {RE_PUSH_ADVICE}",
                extra={"fields": {"corp_id": corp_id}},
            )
            raise NotReady
        self.fetches += 1
        try:
            return await self._dingtalk.corp_access_token(corp_id, ticket)
        except Refused as error:
            fields = {"corp_id": corp_id, "code": error.code}
            if error.code == "invalidSuiteTicket":
                log.error(f"DingTalk refused the stored suite ticket; {RE_PUSH_ADVICE}", extra={"fields": fields})
            elif error.code == "invalidAuthInfo":
                log.warning("organization has not authorized the app", extra={"fields": fields})
            raise


class SuiteEvents:
    """Handles the EVENT pushes of an ISV app; a repeat of an event already handled (same eventId) is skipped."""

    def __init__(self, suite_key: str, stores: Stores) -> None:
        self._suite_key = suite_key
        self._stores = stores
        self._handled = RecentIds(capacity=MAX_EVENTS_REMEMBERED)

    async def handle(self, event: Event) -> None:
        """Act on one event before it is ACKed; raises if that failed, so the ACK asks DingTalk to push it again."""
        if event.event_id and event.event_id in self._handled:
            log.info("event repeated, skipped", extra={"fields": _fields(event)})
            return
        await asyncio.wait_for(self._act(event), EVENT_SECONDS)
        if event.event_id:
            self._handled.claim(event.event_id)

    async def _act(self, event: Event) -> None:
        fields = _fields(event)
        if event.event_type == "suite_ticket":
            ticket = event.data.get("suiteTicket")
            if not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET_CHARS:
                log.warning("suite_ticket event without a usable ticket", extra={"fields": fields})
                return
            if not await self._stores.suite_tickets.store(self._suite_key, ticket, event.born_ms):
                log.info("late event of an older suite ticket, ignored", extra={"fields": fields})
                return
            log.info("stored the new suite ticket", extra={"fields": fields})  # the ticket itself is a credential
        elif event.event_type in ("org_suite_auth", "org_suite_change"):
            log.info("organization authorized the app", extra={"fields": {**fields, **_scope_of(event.data)}})
        elif event.event_type == "org_suite_relieve":
            corp_id = event.corp_id
            forgotten = 0
            if corp_id:
                forgotten = await self._stores.forget_organization(corp_id)
            fields["forgotten"] = str(forgotten)
            log.info("organization removed the app: its token and data dropped", extra={"fields": fields})
        else:
            log.info("event needs nothing from the bot", extra={"fields": fields})


class RelievedWatcher:
    """With Redis and several dynos, an event reaches one dyno: every RELIEVED_POLL_SECONDS each dyno reads which
    organizations removed the app lately and drops its own copies of theirs (tokens, unionIds, sender windows)."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self._seen: dict[str, int] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except Exception as error:  # Redis away: the next look tries again
                log.info("removed organizations not read", extra={"fields": {"error": type(error).__name__}})
            await asyncio.sleep(RELIEVED_POLL_SECONDS)

    async def look(self) -> None:
        for corp_id, at in (await self._stores.relieved()).items():
            if self._seen.get(corp_id) != at:
                self._seen[corp_id] = at
                await self._stores.forget_here(corp_id)
                log.info("copies of a removed organization dropped", extra={"fields": {"corp_id": corp_id}})


def _fields(event: Event) -> dict[str, str]:
    return {"event_type": event.event_type, "event_id": event.event_id, "corp_id": event.corp_id}


def _scope_of(data: dict[str, Any]) -> dict[str, Any]:
    """What an authorization event says about the grant, without the permanent code (a credential)."""
    corp = data.get("authCorpInfo")
    corp_id = corp.get("corpid") if isinstance(corp, dict) else None
    return {"auth_corp_id": corp_id} if isinstance(corp_id, str) else {}
