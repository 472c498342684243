"""`python -m bot demo [--interactive]`: the real bot against the loopback sandbox, scripted or typed by you."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import textwrap
from typing import Any, TextIO
from urllib.parse import unquote

from bot import logs
from bot.app import App
from bot.cards import SEND_AS_USER
from bot.config import Config
from bot.sandbox import Recorded, Sandbox

DEMO_STAFF_ID = "demo-staff"
DEMO_UNION_ID = "demoUnionId0001"
FORBIDDEN = {
    "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
    "message": "没有调用该接口的权限",
    "requestid": "DEMO-403",
    "accessdenieddetail": {"requiredScopes": ["Calendar.Calendar.Write"]},
}
DEMO_COMMAND_TIMEOUT = 2  # seconds; shorter than the default so that giving up does not keep you waiting
THROTTLED = {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "qps", "requestid": "DEMO-QPS"}
_MARKDOWN_LINK = re.compile(r"\[((?:\\.|[^\]])*)\]\((dtmd://[^)]+)\)")


def seed(sandbox: Sandbox) -> None:
    sandbox.add_user(DEMO_STAFF_ID, DEMO_UNION_ID)
    for calendar_id, name in [
        ("cal-holidays", "Company Holidays"),
        ("cal-lunch", "食堂菜单"),
        ("cal-offsite-east", "Team Offsite"),
        ("cal-offsite-west", "Team Offsite"),
        ("cal-sports", "Sports Club"),
    ]:
        sandbox.add_calendar(calendar_id, name)
        sandbox.subscribe(DEMO_UNION_ID, calendar_id)
    sandbox.add_calendar("cal-board", "Board Meetings", scope={"someone-else"})


def view(reply: Recorded) -> tuple[str, list[tuple[str, str]]]:
    """A card as a person reads it: its markdown and its buttons (title, link), from either reply route."""
    body = reply.json()
    if "msgParam" in body:  # robot OpenAPI
        param = json.loads(body["msgParam"])
        buttons = [(param["singleTitle"], param["singleURL"])] if "singleTitle" in param else []
        for number in range(1, 6):
            if f"actionTitle{number}" in param:
                buttons.append((param[f"actionTitle{number}"], param[f"actionURL{number}"]))
        text = param["text"]
    else:
        card = body.get("actionCard") or body.get("markdown") or {}
        text = card.get("text", "")
        buttons = [(button["title"], button["actionURL"]) for button in card.get("btns", [])]
    buttons += [(title.replace("\\", ""), url) for title, url in _MARKDOWN_LINK.findall(text)]
    return _MARKDOWN_LINK.sub(lambda match: match.group(1).replace("\\", ""), text), buttons


class Conversation:
    """Talks to the bot as the demo user, prints every card it answers with and remembers its buttons."""

    def __init__(self, sandbox: Sandbox, out: TextIO) -> None:
        self.sandbox = sandbox
        self.out = out
        self.buttons: list[tuple[str, str]] = []

    async def say(self, text: str | None, *, group: bool = False, staff_id: str = DEMO_STAFF_ID, **extra: Any) -> None:
        data = self.sandbox.chat(text, staff_id, group=group, **extra)
        since = len(self.sandbox.requests)
        where = "in the group" if group else "1:1"
        print(f"  you ({where})> {text if text is not None else '<a picture>'}", file=self.out)
        await self.sandbox.push(data)
        reply = await self.sandbox.wait_reply(data)
        # A card with buttons asked for in a group goes to the sender privately, before the group's notice.
        private = [r for r in self.sandbox.requests[since:] if r.api == "batchSend" and r is not reply and group]
        self.buttons = []
        for answer in [*private, reply]:
            text_shown, buttons = view(answer)
            route = "privately" if answer in private else answer.api
            print(textwrap.indent(text_shown, f"  bot ({route})│ "), file=self.out)
            for title, url in buttons:
                self.buttons.append((title, url))
                print(f"  bot ({route})│ [{len(self.buttons)}] {title}", file=self.out)
        print(file=self.out)

    def heading(self, what: str) -> None:
        print(f"── {what}", file=self.out)

    async def press(self, number: int) -> None:
        if not 1 <= number <= len(self.buttons):
            print(f"  (no button {number} on the last card)\n", file=self.out)
            return
        title, url = self.buttons[number - 1]
        print(f"  (you press [{number}] {title})", file=self.out)
        await self.say(unquote(url.removeprefix(SEND_AS_USER)))


async def play_script(talk: Conversation) -> None:
    sandbox, step = talk.sandbox, talk.heading
    step("Help")
    await talk.say("help")
    step("Your subscribed calendars, one button each")
    await talk.say("list")
    step("Unsubscribe by name; the card has an undo button")
    await talk.say("unsubscribe company holidays")
    step("Press undo")
    await talk.press(1)
    step("A name two calendars share: no guessing")
    await talk.say("unsubscribe Team Offsite")
    step("Pick the second")
    await talk.press(2)
    step("In Chinese, by a Chinese name, @-mentioning the bot in a group")
    await talk.say("取消订阅 食堂菜单", group=True)
    step("Several at once")
    await talk.say("unsubscribe cal-sports, cal-board, cal-nope")
    step("Your own primary calendar")
    await talk.say(f"unsubscribe primary-{DEMO_UNION_ID}")
    step("A name that matches nothing")
    await talk.say("unsubscribe Yoga Class")
    step("No calendar named at all")
    await talk.say("unsubscribe")
    step("An id that tries to change the URL")
    await talk.say("unsubscribe ../../admin")
    sandbox.fail_next("unsubscribe", 403, FORBIDDEN)
    step("The app lacks Calendar.Calendar.Write")
    await talk.say("unsubscribe cal-offsite-east")
    sandbox.fail_next("unsubscribe", 403, THROTTLED)
    step("DingTalk throttles once: the bot waits a second and retries")
    await talk.say("unsubscribe cal-offsite-east")
    step("Undo that")
    await talk.press(1)
    sandbox.fail_next("unsubscribe", 503, {"code": "ServiceUnavailable", "message": "down"}, times=50)
    step(f"DingTalk keeps failing: the bot gives up after {DEMO_COMMAND_TIMEOUT} s")
    await talk.say("unsubscribe cal-offsite-east")
    sandbox.clear_faults()
    step("Someone from another organization")
    await talk.say("unsubscribe cal-holidays", senderCorpId="ding-other")
    step("A picture instead of text")
    await talk.say(None)
    step("Nothing left to list")
    await talk.say("unsubscribe cal-holidays, cal-offsite-east")
    await talk.say("日历")


async def play_interactive(talk: Conversation) -> None:
    print(
        "Type a message as the demo user. A number presses that button of the last card; start a line with",
        "'/group ' to write in a group; 'quit' or Ctrl-D ends.\n",
        file=talk.out,
    )
    while True:
        try:
            line = (await asyncio.to_thread(input, "you> ")).strip()
        except EOFError:
            return
        if line in ("quit", "exit"):
            return
        if line.isdigit():
            await talk.press(int(line))
        elif line.startswith("/group "):
            await talk.say(line.removeprefix("/group "), group=True)
        else:
            await talk.say(line)


async def run(interactive: bool, out: TextIO) -> int:
    sandbox = Sandbox()
    await sandbox.start()
    seed(sandbox)
    # The demo user sends more than the default 10 commands a minute.
    settings = {"BOT_COMMAND_TIMEOUT": str(DEMO_COMMAND_TIMEOUT), "BOT_USER_RATE": "1000"}
    app = App(Config.from_env({**sandbox.bot_env(), **settings}))
    runner = asyncio.create_task(app.run())
    try:
        await sandbox.wait_connected()
        print(f"Sandbox DingTalk on {sandbox.base_url}; the bot is connected to it in Stream mode.\n", file=out)
        talk = Conversation(sandbox, out)
        await (play_interactive(talk) if interactive else play_script(talk))
    finally:
        await app.shutdown(5)
        await runner
        await sandbox.close()
    return 0


def main(argv: list[str]) -> int:
    if argv not in ([], ["--interactive"]):
        print("usage: python -m bot demo [--interactive]", file=sys.stderr)
        return 2
    logs.configure("WARNING")
    return asyncio.run(run(argv == ["--interactive"], sys.stdout))
