"""An ISV app's events, pushed as EVENT frames: suite tickets, organizations authorizing and removing the app."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from bot.sandbox.stream import StreamGateway


class IsvEvents(StreamGateway):
    """What DingTalk tells an ISV app about its organizations."""

    async def push_event(
        self,
        event_type: str,
        data: dict[str, Any],
        corp_id: str = "",
        event_id: str = "",
        socket: int | None = None,
        born_ms: int = 0,
    ) -> str:
        """An EVENT frame as DingTalk pushes it to an ISV app's Stream; returns its messageId (to wait for its ACK)."""
        message_id = f"event-{uuid.uuid4().hex}"
        headers = {
            "appId": self.client_id,
            "contentType": "application/json",
            "messageId": message_id,
            "time": str(int(time.time() * 1000)),
            "topic": "*",
            "eventType": event_type,
            "eventId": event_id or uuid.uuid4().hex,
            "eventCorpId": corp_id or self.corp_id,
            "eventBornTime": str(born_ms or int(time.time() * 1000)),
            "eventUnifiedAppId": self.client_id,
        }
        frame = {"specVersion": "1.0", "type": "EVENT", "headers": headers, "data": json.dumps(data)}
        await self.push_raw(json.dumps(frame), socket)
        return message_id

    async def push_suite_ticket(self, ticket: str = "", event_id: str = "") -> str:
        """A new suite ticket, pushed as DingTalk does every 5 hours; it replaces the one before."""
        self.suite_ticket = ticket or f"ticket-{uuid.uuid4().hex}"
        self.issued_secrets.append(self.suite_ticket)
        # DingTalk's tickets are minutes apart: each one's eventBornTime is later than the last one's, also when the
        # tests push two within a millisecond (a tie would let a late older ticket look as new as the newest)
        last_born_ms = self.suite_tickets_made[-1][1] if self.suite_tickets_made else 0
        born_ms = max(int(time.time() * 1000), last_born_ms + 1)
        self.suite_tickets_made.append((self.suite_ticket, born_ms))
        return await self.push_event(
            "suite_ticket", {"suiteTicket": self.suite_ticket}, event_id=event_id, born_ms=born_ms
        )

    async def push_superseded_ticket(self, index: int = -2) -> str:
        """An older ticket's event pushed late (a re-push, or a delivery that waited), with its own eventBornTime
        and a new eventId: DingTalk accepts only the newest ticket, so a bot that keeps this one is not ready."""
        ticket, born_ms = self.suite_tickets_made[index]
        return await self.push_event("suite_ticket", {"suiteTicket": ticket}, born_ms=born_ms)

    async def authorize_corp(self, corp_id: str, corp_name: str = "Sandbox Org") -> str:
        """The organization authorizes the app: `org_suite_auth` is pushed."""
        self.authorized_corps.add(corp_id)
        data = {"authCorpInfo": {"corpid": corp_id, "corpName": corp_name}, "permanentCode": uuid.uuid4().hex}
        return await self.push_event("org_suite_auth", data, corp_id)

    async def relieve_corp(self, corp_id: str, socket: int | None = None) -> str:
        """The organization removes the app: its tokens stop working and `org_suite_relieve` is pushed (to one
        connection, as every push is)."""
        self.authorized_corps.discard(corp_id)
        self._valid_tokens -= {token for token, corp in self._token_corps.items() if corp == corp_id}
        return await self.push_event("org_suite_relieve", {}, corp_id, socket=socket)
