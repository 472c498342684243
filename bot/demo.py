"""`python -m bot demo`: the real bot against the loopback sandbox, playing a scripted conversation."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import textwrap
from typing import Any

from bot import logs
from bot.app import App
from bot.config import Config
from bot.sandbox import Sandbox

DEMO_STAFF_ID = "demo-staff"
DEMO_UNION_ID = "demoUnionId0001"
FORBIDDEN = {
    "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
    "message": "没有调用该接口的权限",
    "requestid": "DEMO-403",
    "accessdenieddetail": {"requiredScopes": ["Calendar.Calendar.Write"]},
}


def seed(sandbox: Sandbox) -> None:
    sandbox.add_user(DEMO_STAFF_ID, DEMO_UNION_ID)
    sandbox.add_calendar("cal-holidays", "Company Holidays")
    sandbox.add_calendar("cal-lunch", "Canteen Menu")
    sandbox.add_calendar("cal-board", "Board Meetings", scope={"someoneElse"})
    sandbox.subscribe(DEMO_UNION_ID, "cal-holidays")
    sandbox.subscribe(DEMO_UNION_ID, "cal-lunch")


def script(sandbox: Sandbox) -> list[tuple[str, dict[str, Any]]]:
    """(what happens, the callback the sandbox pushes) in the order the demo plays them."""
    me = DEMO_STAFF_ID
    return [
        ("ask for help", sandbox.chat("help", me)),
        ("unsubscribe, in English, 1:1", sandbox.chat("unsubscribe cal-holidays", me)),
        (
            "unsubscribe, in Chinese, @-mentioning the bot in a group",
            sandbox.chat("取消订阅 cal-lunch", me, group=True),
        ),
        ("a calendar whose scope excludes the user (permissionDenied)", sandbox.chat("unsubscribe cal-board", me)),
        (
            "the user's own primary calendar (calendar type invalid)",
            sandbox.chat(f"unsubscribe primary-{DEMO_UNION_ID}", me),
        ),
        ("an unknown id (forwardErrorMessage)", sandbox.chat("unsubscribe cal-nope", me)),
        ("no id at all", sandbox.chat("unsubscribe", me)),
        ("an id that tries to change the URL", sandbox.chat("unsubscribe ../../admin", me)),
        ("the app lacks Calendar.Calendar.Write (403)", sandbox.chat("unsubscribe cal-holidays", me)),
        ("DingTalk is throttling (403 QpsLimit)", sandbox.chat("unsubscribe cal-holidays", me)),
        ("someone from another organization", sandbox.chat("unsubscribe cal-holidays", "", senderCorpId="dingother")),
        ("a picture instead of text", sandbox.chat(None, me)),
    ]


def card_text(body: dict[str, Any]) -> str:
    """A card as a person would read it in a terminal."""
    if "msgKey" in body:  # robot OpenAPI
        return str(json.loads(body["msgParam"])["text"])
    card = body.get("actionCard") or body.get("markdown") or {}
    lines = [card.get("text", "")]
    for number, button in enumerate(card.get("btns", []), start=1):
        lines.append(f"[{number}] {button['title']}")
    return "\n".join(lines)


async def play(out: Any) -> int:
    sandbox = Sandbox()
    await sandbox.start()
    seed(sandbox)
    app = App(Config.from_env(sandbox.bot_env()))
    runner = asyncio.create_task(app.run())
    try:
        await sandbox.wait_connected()
        print(f"Sandbox DingTalk on {sandbox.base_url}; the bot is connected over Stream mode.\n", file=out)
        for what, data in script(sandbox):
            if "lacks" in what:
                sandbox.fail_next("unsubscribe", 403, FORBIDDEN)
            if "throttling" in what:
                sandbox.fail_next(
                    "unsubscribe",
                    403,
                    {
                        "code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
                        "message": "qps limit",
                        "requestid": "DEMO-QPS",
                    },
                )
            text = data.get("text", {}).get("content", f"<{data['msgtype']}>").strip()
            await sandbox.push(data)
            reply = await sandbox.wait_reply(data)
            print(f"── {what}\n  you> {text}", file=out)
            print(textwrap.indent(card_text(reply.json()), "  bot│ "), "\n", file=out)
    finally:
        await app.shutdown(5)
        await runner
        await sandbox.close()
    return 0


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m bot demo", file=sys.stderr)
        return 2
    logs.configure("WARNING")
    logging.getLogger("bot").setLevel(logging.WARNING)
    return asyncio.run(play(sys.stdout))
