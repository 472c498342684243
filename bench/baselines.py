"""The two bots a user would otherwise write from the dingtalk-stream SDK's README and examples, doing the same
DingTalk calls as ours for `unsubscribe <id>`: a ChatbotHandler with the SDK's reply helpers, and the SDK's
AsyncChatbotHandler (thread pool). bench/run.py starts them: python bench/baselines.py readme|threadpool"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from urllib.parse import quote

import dingtalk_stream
import requests
from dingtalk_stream import AckMessage

API = os.environ["DINGTALK_API_BASE"]
OAPI = os.environ["DINGTALK_OAPI_BASE"]


def unsubscribe(handler: dingtalk_stream.ChatbotHandler, incoming: dingtalk_stream.ChatbotMessage) -> None:
    """The same calls as the bot: token, staffId → unionId, unsubscribe, reply to the webhook."""
    calendar_id = incoming.text.content.strip().split(maxsplit=1)[1].strip('"')
    token = handler.dingtalk_client.get_access_token()
    user = requests.post(
        f"{OAPI}/topapi/v2/user/get",
        params={"access_token": token},
        json={"userid": incoming.sender_staff_id},
        timeout=10,
    ).json()
    union_id = user["result"]["unionid"]
    headers = {"x-acs-dingtalk-access-token": token}
    requests.post(
        f"{API}/v1.0/calendar/users/{union_id}/calendars/{quote(calendar_id, safe='')}/unsubscribe",
        headers=headers,
        timeout=10,
    )
    handler.reply_markdown("✅ Unsubscribed", f"### ✅ Unsubscribed\n{calendar_id}", incoming)


class ReadmeHandler(dingtalk_stream.ChatbotHandler):
    """As in the SDK's README: an async process() that calls the blocking helpers directly."""

    async def process(self, callback: dingtalk_stream.CallbackMessage) -> tuple[int, str]:
        unsubscribe(self, dingtalk_stream.ChatbotMessage.from_dict(callback.data))
        return AckMessage.STATUS_OK, "OK"


class ThreadPoolHandler(dingtalk_stream.AsyncChatbotHandler):
    """As in the SDK's examples: a synchronous process() run on the handler's thread pool (8 workers)."""

    def process(self, callback: dingtalk_stream.CallbackMessage) -> tuple[int, str]:
        unsubscribe(self, dingtalk_stream.ChatbotMessage.from_dict(callback.data))
        return AckMessage.STATUS_OK, "OK"


class LoopbackClient(dingtalk_stream.DingTalkStreamClient):
    OPEN_CONNECTION_API = f"{API}/v1.0/gateway/connections/open"

    def get_host_ip(self) -> str:
        return "127.0.0.1"  # the SDK would otherwise open a UDP socket towards 8.8.8.8 to learn it


def main() -> None:
    handler = {"readme": ReadmeHandler, "threadpool": ThreadPoolHandler}[sys.argv[1]]()
    logging.basicConfig(level=logging.WARNING)
    credential = dingtalk_stream.Credential(os.environ["DINGTALK_CLIENT_ID"], os.environ["DINGTALK_CLIENT_SECRET"])
    client = LoopbackClient(credential, logger=logging.getLogger("baseline"))
    client.register_callback_handler(dingtalk_stream.ChatbotMessage.TOPIC, handler)
    asyncio.run(client.start())


if __name__ == "__main__":
    main()
