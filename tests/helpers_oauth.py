"""What the tests of users' own tokens share: a bot's BOT_CALENDAR_TOKEN=user settings, the browser, the consent."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from bot.sandbox.platform import Sandbox
from tests.helpers import BOT_ENV, User, buttons, card, converse

SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnop"


def user_env(sandbox: Sandbox, state_dir: Path, port: int) -> dict[str, str]:
    return {
        **BOT_ENV,
        "BOT_CALENDAR_TOKEN": "user",
        "BOT_SECRET_KEY": SECRET_KEY,
        "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "DINGTALK_LOGIN_BASE": sandbox.base_url,
        "BOT_STATE_DIR": str(state_dir),
        "BOT_RETRY_PAUSE_SCALE": "0.01",
    }


async def browse(url: str, accept_language: str = "en") -> httpx.Response:
    async with httpx.AsyncClient() as browser:
        return await browser.get(url, headers={"Accept-Language": accept_language})


async def connect_link(sandbox: Sandbox, user: User, text: str) -> str:
    """Send a command as a user who has not connected: the connect card's one button."""
    _, reply = await converse(sandbox, sandbox.chat(text, user.staff_id))
    (button,) = buttons(reply)
    assert "Connect your DingTalk account" in card(reply)["title"]
    return button["actionURL"]


async def consent(sandbox: Sandbox, link: str, signed_in: User) -> str:
    """The browser signed in as `signed_in` opens the link and consents: where DingTalk sends it back."""
    sandbox.sign_in(signed_in.union_id)
    answer = await browse(link)
    assert answer.status_code == 302
    return answer.headers["Location"]


def subscribed(sandbox: Sandbox, user: User, calendar_id: str) -> bool:
    return calendar_id in sandbox.subscriptions[user.union_id]


def private_cards(sandbox: Sandbox, user: User) -> list[dict[str, str]]:
    sends = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    return [json.loads(r.json()["msgParam"]) for r in sends]
