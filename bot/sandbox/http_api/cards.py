"""Interactive cards: createAndDeliver and the update in place, answered by the card platform (bot/sandbox/cards.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.sandbox.http import Route
from bot.sandbox.state import PlatformState


class CardApi(PlatformState):
    async def _api_card_createAndDeliver(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        return await self.cards.create_and_deliver(request, body)

    async def _api_card_update(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        return await self.cards.update(request, body)


ROUTES = (
    Route("POST", "/v1.0/card/instances/createAndDeliver", "card/createAndDeliver", CardApi._api_card_createAndDeliver),
    Route("PUT", "/v1.0/card/instances", "card/update", CardApi._api_card_update),
)
