"""The floor bot: raw aiohttp + orjson + uvloop making the bot's calls for `unsubscribe "<id>"` (token, user lookup,
unsubscribe, webhook reply) with no safety at all; what the same work costs at the least. A text in quotes is an id
(one calendar call); any other text is looked up in the sender's calendars first, as the bot does (one call more).
bench/run.py starts it: python bench/floor.py"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import uvloop

API = os.environ["DINGTALK_API_BASE"]
OAPI = os.environ["DINGTALK_OAPI_BASE"]
CLIENT_ID = os.environ["DINGTALK_CLIENT_ID"]
CLIENT_SECRET = os.environ["DINGTALK_CLIENT_SECRET"]
JSON = {"content-type": "application/json"}


class Floor:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.token = ""
        self.tasks: set[asyncio.Task[None]] = set()

    async def post(self, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        async with self.session.post(url, data=data, headers=headers or JSON) as answer:
            return orjson.loads(await answer.read() or b"{}")

    async def access_token(self) -> str:
        if not self.token:
            answer = await self.post(
                f"{API}/v1.0/oauth2/accessToken", {"appKey": CLIENT_ID, "appSecret": CLIENT_SECRET}
            )
            self.token = answer["accessToken"]
        return self.token

    async def unsubscribe(self, data: dict[str, Any]) -> None:
        text = data["text"]["content"].strip().split(maxsplit=1)[1]
        calendar_id = text.strip('"')
        token = await self.access_token()
        user_url = f"{OAPI}/topapi/v2/user/get?access_token={token}"
        union_id = (await self.post(user_url, {"userid": data["senderStaffId"]}))["result"]["unionid"]
        headers = {"x-acs-dingtalk-access-token": token, **JSON}
        calendars = f"{API}/v1.0/calendar/users/{quote(union_id, safe='')}/calendars"
        if not text.startswith('"'):
            async with self.session.get(calendars, headers=headers) as answer:
                listed = orjson.loads(await answer.read())["response"]["calendars"]
            calendar_id = next(c["id"] for c in listed if calendar_id in (c["id"], c.get("summary")))
        await self.post(f"{calendars}/{quote(calendar_id, safe='')}/unsubscribe", None, headers)
        card = {"title": "✅ Unsubscribed", "text": f"### ✅ Unsubscribed\n{calendar_id}"}
        await self.post(data["sessionWebhook"], {"msgtype": "markdown", "markdown": card})

    async def run(self) -> None:
        body = {
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "subscriptions": [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}],
            "ua": "floor",
            "localIp": "",
        }
        opened = await self.post(f"{API}/v1.0/gateway/connections/open", body)
        async with self.session.ws_connect(f"{opened['endpoint']}?ticket={opened['ticket']}") as socket:
            async for frame in socket:
                message = orjson.loads(frame.data)
                headers = message["headers"]
                ack: dict[str, Any] = {"response": None}
                if message["type"] == "SYSTEM":
                    ack = {"opaque": orjson.loads(message["data"]).get("opaque")}
                else:
                    task = asyncio.create_task(self.unsubscribe(orjson.loads(message["data"])))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                reply = {"code": 200, "headers": {"messageId": headers["messageId"]}, "message": "OK", "data": ack}
                await socket.send_str(orjson.dumps(reply).decode())


async def main() -> None:
    connector = aiohttp.TCPConnector(limit=264)  # as many connections as the bot's pool (BOT_MAX_IN_FLIGHT + 8)
    async with aiohttp.ClientSession(connector=connector) as session:
        await Floor(session).run()


if __name__ == "__main__":
    uvloop.run(main())
