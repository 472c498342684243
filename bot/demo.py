"""`python -m bot demo [--interactive]`: the real bot against the loopback sandbox, scripted or typed by you."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any, TextIO
from urllib.parse import unquote

from bot import logs
from bot.app import App
from bot.cards import SEND_AS_USER
from bot.cardview import client_text, frame
from bot.config import VARIABLES, Config
from bot.sandbox import Recorded, Sandbox

DEMO_STAFF_ID = "demo-staff"
DEMO_UNION_ID = "demoUnionId0001"
COLLEAGUE_STAFF_ID = "colleague"
COLLEAGUE_UNION_ID = "colleagueUnionId0002"
FORBIDDEN = {
    "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
    "message": "没有调用该接口的权限",
    "requestid": "DEMO-403",
    "accessdenieddetail": {"requiredScopes": ["Calendar.Calendar.Write"]},
}
DEMO_COMMAND_TIMEOUT = 2  # seconds; shorter than the default so that giving up does not keep you waiting
DEMO_USER_RATE = 30  # commands a minute; the scripted demo user sends about twenty
# What the demo changes from a real deployment's defaults, and why; said at the start.
DEMO_SETTINGS = {
    "BOT_COMMAND_TIMEOUT": (str(DEMO_COMMAND_TIMEOUT), "so that giving up on DingTalk does not keep you waiting"),
    "BOT_USER_RATE": (str(DEMO_USER_RATE), "the demo user sends more commands a minute than one person would"),
    "LOG_LEVEL": ("WARNING", "only problems are logged, between the cards"),
}
ORG_QUOTA = {
    "code": "Forbidden.AccessDenied.ApiCountLimitForOrg",
    "message": "api count limit for org",
    "requestid": "DEMO-QUOTA",
}
REPLY_WAIT_SECONDS = 10.0  # a message dropped by the per-user limit gets no answer at all
FRAME_WIDTH = (40, 100)  # columns: narrowest and widest card frame
SIGPIPE_EXIT = 141  # as a shell tool killed by SIGPIPE: the reader (e.g. `head`) stopped reading
RUNNER_STOP_SECONDS = 1.0  # after shutdown, how long the bot's connection loop gets to end by itself
INTERRUPTED_EXIT = 130  # as after Ctrl-C (SIGINT)
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

    def __init__(self, sandbox: Sandbox, out: TextIO, width: int = FRAME_WIDTH[1]) -> None:
        self.sandbox = sandbox
        self.out = out
        self.width = width
        self.buttons: list[tuple[str, str]] = []

    async def say(self, text: str | None, *, group: bool = False, staff_id: str = DEMO_STAFF_ID, **extra: Any) -> None:
        data = self.sandbox.chat(text, staff_id, group=group, **extra)
        since = len(self.sandbox.requests)
        where = "in the group" if group else "1:1"
        who = "you" if staff_id == DEMO_STAFF_ID else staff_id
        print(f"  {who} ({where})> {text if text is not None else '<a picture>'}", file=self.out, flush=True)
        await self.sandbox.push(data)
        try:
            reply = await self.sandbox.wait_reply(data, timeout=REPLY_WAIT_SECONDS)
        except TimeoutError:
            print(f"  (no answer within {REPLY_WAIT_SECONDS:.0f} s)\n", file=self.out)
            return
        # A card with buttons asked for in a group goes to the sender privately, before the group's notice.
        private = [r for r in self.sandbox.requests[since:] if r.api == "batchSend" and r is not reply and group]
        self.buttons = []
        for answer in [*private, reply]:
            markdown, buttons = view(answer)
            lines = client_text(markdown).splitlines()
            for title, url in buttons:
                self.buttons.append((title, url))
                lines.append(f"[{len(self.buttons)}] {title}")
            label = f"bot ({'privately' if answer in private else answer.api})"
            for row in frame(label, lines, self.width - 2):
                print(f"  {row}", file=self.out)
        print(file=self.out, flush=True)  # card by card, also into a pipe (`| tee`)

    async def flood(self, staff_id: str, text: str, count: int) -> None:
        """Send `count` messages as another employee, answered but not printed."""
        messages = [self.sandbox.chat(text, staff_id) for _ in range(count)]
        for data in messages:
            await self.sandbox.push(data)
        for data in messages:
            await self.sandbox.wait_reply(data, timeout=REPLY_WAIT_SECONDS)
        print(f"  {staff_id} (1:1)> {text}   … {count} times within a second: {count} answers", file=self.out)

    def heading(self, what: str) -> None:
        print(f"── {what}", file=self.out, flush=True)

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
    sandbox.fail_next("unsubscribe", 403, ORG_QUOTA)
    step("The organization's monthly DingTalk API quota is used up: never retried")
    await talk.say("unsubscribe cal-offsite-east")
    step(f"A colleague sends more than BOT_USER_RATE ({DEMO_USER_RATE}) commands a minute")
    sandbox.add_user(COLLEAGUE_STAFF_ID, COLLEAGUE_UNION_ID)
    await talk.flood(COLLEAGUE_STAFF_ID, "help", DEMO_USER_RATE)
    await talk.say("list", staff_id=COLLEAGUE_STAFF_ID)
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
        "'/group ' to write in a group; 'quit', Ctrl-D or Ctrl-C ends.\n",
        file=talk.out,
    )
    lines = typed_lines()
    while True:
        print("you> ", end="", file=talk.out, flush=True)
        line = await lines.get()
        if line is None or line.strip() in ("quit", "exit"):
            return
        line = line.strip()
        if line.isdigit():
            await talk.press(int(line))
        elif line.startswith("/group "):
            await talk.say(line.removeprefix("/group "), group=True)
        elif line:
            await talk.say(line)


def typed_lines() -> asyncio.Queue[str | None]:
    """Lines from stdin, read by a daemon thread so that Ctrl-C never waits for the Enter key; None at the end."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="demo-stdin", daemon=True).start()
    return lines


def announce_settings(sandbox: Sandbox, out: TextIO) -> None:
    defaults = {variable.name: variable.default for variable in VARIABLES}
    print(f"Sandbox DingTalk on {sandbox.base_url}; the bot is connected to it in Stream mode.", file=out)
    print("Demo-only settings (a real deployment uses the defaults unless you set them):", file=out)
    for name, (value, why) in DEMO_SETTINGS.items():
        print(f"  {name}={value} (default {defaults[name]}): {why}", file=out)
    print(file=out)


async def run(interactive: bool, out: TextIO, width: int = FRAME_WIDTH[1]) -> int:
    """Play the demo; on Ctrl-C stop at once and return INTERRUPTED_EXIT."""
    sandbox = Sandbox()
    await sandbox.start()
    seed(sandbox)
    settings = {name: value for name, (value, _) in DEMO_SETTINGS.items()}
    settings["BOT_STATE_DIR"] = tempfile.mkdtemp(prefix="calbot-demo-")  # a demo's journal is not resumed later
    app = App(Config.from_env({**sandbox.bot_env(), **settings}))
    runner = asyncio.create_task(app.run())
    # Ctrl-C sets an event rather than cancelling the script: a cancellation can be lost inside asyncio.wait_for
    # on Python 3.11 when what it waits for finishes at the same moment, and the script would play on.
    interrupted = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)
    script = asyncio.create_task(play(sandbox, interactive, out, width))
    ctrl_c = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({script, ctrl_c}, return_when=asyncio.FIRST_COMPLETED)
        if interrupted.is_set():
            logging.disable(logging.CRITICAL)  # leaving at once: no log lines about commands cut short
            script.cancel()
            await stop(app, runner, sandbox, grace=0.0)
            await asyncio.wait({script}, timeout=RUNNER_STOP_SECONDS)
            if script.done() and not script.cancelled():
                script.exception()  # whatever it met once the sandbox was gone does not matter any more
            return INTERRUPTED_EXIT
        ctrl_c.cancel()
        try:
            script.result()
        except BrokenPipeError:
            silence_stdout()
            raise
        finally:
            await stop(app, runner, sandbox, grace=5.0)
        return 0
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


async def play(sandbox: Sandbox, interactive: bool, out: TextIO, width: int) -> None:
    await sandbox.wait_connected()
    announce_settings(sandbox, out)
    talk = Conversation(sandbox, out, width)
    await (play_interactive(talk) if interactive else play_script(talk))
    out.flush()


async def stop(app: App, runner: asyncio.Task[None], sandbox: Sandbox, grace: float) -> None:
    """Stop the bot (commands in flight get `grace` seconds) and the sandbox."""
    await app.shutdown(grace)
    # A stop that lands while the connection is still being opened can leave the bot reading it; the demo is over
    # either way, so it does not wait for that socket.
    await asyncio.wait({runner}, timeout=RUNNER_STOP_SECONDS)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await sandbox.close()


def silence_stdout() -> None:
    """The reader is gone: send what is still to be written (logs, the final flush) nowhere, not into a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(interactive: bool = False) -> int:
    logs.configure(DEMO_SETTINGS["LOG_LEVEL"][0])
    columns = shutil.get_terminal_size((FRAME_WIDTH[1], 24)).columns
    width = min(max(columns, FRAME_WIDTH[0]), FRAME_WIDTH[1])
    try:
        code = asyncio.run(run(interactive, sys.stdout, width))
    except KeyboardInterrupt:  # Ctrl-C before the demo's own handler is in place
        code = INTERRUPTED_EXIT
    except BrokenPipeError:
        silence_stdout()
        return SIGPIPE_EXIT
    if code == INTERRUPTED_EXIT:
        print("\ninterrupted", file=sys.stderr)
    return code
