"""`python -m bot demo [--interactive | --isv] [--cards]`: the real bot against the loopback sandbox, scripted or typed
by you; `--isv` plays a third-party enterprise (ISV) app serving two organizations, `--cards` interactive cards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from typing import Any, TextIO
from urllib.parse import unquote

import httpx

from bot import logs
from bot.cards.render import SEND_AS_USER
from bot.cards.view import draw
from bot.config import VARIABLES, Config
from bot.sandbox.cards import TEMPLATE_ID
from bot.sandbox.http import Recorded
from bot.sandbox.platform import Sandbox
from bot.wiring import App

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
ISV_ROBOT_CODE = "dingdemoisvrobot"  # an ISV robot's own code, which is not the SuiteKey
ISV_ORGANIZATIONS = {"dingacme": "Acme", "dingglobex": "Globex"}
ISV_STRANGER = "dingnotyet"  # an organization that never authorized the app
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
        self.card_buttons: list[tuple[str, dict[str, str]]] = []  # the last interactive card's: title, params
        self.card = ""  # that card's outTrackId

    def draw(self, label: str, markdown: str, titles: list[str]) -> None:
        for row in draw(label, markdown, titles, self.width - 2, color=self.out.isatty()):
            print(f"  {row}", file=self.out)

    async def say(self, text: str | None, *, group: bool = False, staff_id: str = DEMO_STAFF_ID, **extra: Any) -> None:
        data = self.sandbox.chat(text, staff_id, group=group, **extra)
        since = len(self.sandbox.requests)
        where = "in the group" if group else "1:1"
        who = "you" if staff_id == DEMO_STAFF_ID else staff_id
        print(f"  {who} ({where})> {text if text is not None else '<a picture>'}", file=self.out, flush=True)
        space = data["conversationId"] if group else staff_id
        cards_before = set(self.sandbox.cards.in_space(space))
        await self.sandbox.push(data)

        def answered() -> Any:
            new_cards = [track for track in self.sandbox.cards.in_space(space) if track not in cards_before]
            return new_cards or self.sandbox.replies_to(data)

        try:
            answer = await self.sandbox.wait_for(answered, timeout=REPLY_WAIT_SECONDS)
        except TimeoutError:
            print(f"  (no answer within {REPLY_WAIT_SECONDS:.0f} s)\n", file=self.out)
            return
        if isinstance(answer[0], str):  # an interactive card (BOT_CARD_TEMPLATE_ID)
            self.show_card(answer[0], staff_id, "bot (card, in the group)" if group else "bot (card)")
            return
        reply = answer[0]
        # A card with buttons asked for in a group goes to the sender privately, before the group's notice.
        private = [r for r in self.sandbox.requests[since:] if r.api == "batchSend" and r is not reply and group]
        self.buttons, self.card_buttons = [], []
        for answered_with in [*private, reply]:
            markdown, buttons = view(answered_with)
            self.buttons += buttons
            label = f"bot ({'privately' if answered_with in private else answered_with.api})"
            self.draw(label, markdown, [title for title, _ in buttons])
        print(file=self.out, flush=True)  # card by card, also into a pipe (`| tee`)

    def show_card(self, track: str, viewer: str, label: str) -> None:
        """An interactive card as `viewer` sees it: public data, their private result and Undo over it."""
        seen = self.sandbox.cards.seen_by(track, viewer)
        parts = [seen.get("body", ""), seen.get("status", ""), seen.get("result", "")]
        rows = json.loads(seen.get("rows") or "[]")
        self.card, self.buttons = track, []
        self.card_buttons = [(row["label"], {"action": row["action"], "token": row["token"]}) for row in rows]
        if seen.get("has_undo") == "true":
            self.card_buttons.append((seen["undo_label"], {"action": seen["undo_action"], "token": seen["undo_token"]}))
        self.draw(label, "\n\n---\n\n".join(part for part in parts if part), [t for t, _ in self.card_buttons])
        print(file=self.out, flush=True)

    async def press_card(self, number: int, staff_id: str = DEMO_STAFF_ID) -> None:
        """Press a button of the last interactive card as `staff_id`: the card updates in place, for them."""
        title, params = self.card_buttons[number - 1]
        who = "you" if staff_id == DEMO_STAFF_ID else staff_id
        print(f"  ({who} press [{number}] {title} on the card)", file=self.out)
        card = self.sandbox.cards.instances[self.card]
        version = card.versions
        ack = await self.sandbox.wait_ack(await self.sandbox.press_card(self.card, staff_id, params))
        try:
            await self.sandbox.wait_for(lambda: card.versions > version, timeout=REPLY_WAIT_SECONDS)
        except TimeoutError:
            print(f"  (the card did not change; the bot answered {ack['data']})\n", file=self.out)
            return
        how = "in the answer" if json.loads(ack["data"])["response"] else "by PUT after the answer"
        self.show_card(self.card, staff_id, f"bot (updated for {who}, {how})")

    async def flood(self, staff_id: str, text: str, count: int) -> None:
        """Send `count` messages as another employee, answered but not printed."""
        messages = [self.sandbox.chat(text, staff_id) for _ in range(count)]
        for data in messages:
            await self.sandbox.push(data)
        for data in messages:
            await self.sandbox.wait_reply(data, timeout=REPLY_WAIT_SECONDS)
        print(f"  {staff_id} (1:1)> {text}   … {count} times within a second: {count} answers", file=self.out)

    async def consent(self, number: int) -> None:
        """Press the connect button as a browser would: sign in, agree, follow DingTalk's redirect back to the bot
        (the demo opens the callback itself); print the page, then the card of the command that waited."""
        title, url = self.buttons[number - 1]
        print(f"  (you press [{number}] {title}, sign in to DingTalk and agree)", file=self.out)
        self.sandbox.sign_in(DEMO_UNION_ID)
        since = len(self.sandbox.requests)
        async with httpx.AsyncClient() as browser:
            redirect = await browser.get(url)
            page = await browser.get(redirect.headers["Location"])
        heading = re.search(r"<h1>(.*?)</h1>", page.text)
        print(f"  browser ({page.status_code})> {heading.group(1) if heading else page.text[:80]}", file=self.out)
        if page.status_code != 200:
            print(file=self.out, flush=True)
            return
        sent = await self.sandbox.wait_for(
            lambda: [r for r in self.sandbox.requests[since:] if r.api == "batchSend"], REPLY_WAIT_SECONDS
        )
        markdown, buttons = view(sent[0])
        self.buttons = buttons
        self.draw("bot (privately: the command that waited)", markdown, [title for title, _ in buttons])
        print(file=self.out, flush=True)

    def heading(self, what: str) -> None:
        print(f"── {what}", file=self.out, flush=True)

    async def press(self, number: int) -> None:
        if self.card_buttons and 1 <= number <= len(self.card_buttons):
            await self.press_card(number)
            return
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


async def play_user_tokens(talk: Conversation) -> None:
    """BOT_CALENDAR_TOKEN=user: the connect flow, the cached token, withdrawn consent and disconnect."""
    sandbox, step = talk.sandbox, talk.heading
    step("Calendar calls with your own DingTalk token: first the bot asks you to connect your account")
    await talk.say("unsubscribe company holidays")
    step("Connect: DingTalk sends your browser back to the bot, and the command that waited runs")
    await talk.consent(1)
    step("Later commands use your token, without asking again")
    await talk.say("list")
    step("You withdraw your consent in DingTalk (Me → Privacy → App authorizations): back to the connect card")
    sandbox.withdraw_consent(DEMO_UNION_ID)
    await talk.say("unsubscribe 食堂菜单")
    step("Connect again")
    await talk.consent(1)
    step("Disconnect: the bot deletes your tokens")
    await talk.say("disconnect")
    await talk.say("list")


async def play_cards(talk: Conversation) -> None:
    """BOT_CARD_TEMPLATE_ID: cards in the group itself, pressed by you and a colleague, updated in place."""
    sandbox, step = talk.sandbox, talk.heading
    sandbox.add_user(COLLEAGUE_STAFF_ID, COLLEAGUE_UNION_ID)
    sandbox.subscribe(COLLEAGUE_UNION_ID, "cal-sports")

    def button(text: str) -> int:
        return next(number for number, (title, _) in enumerate(talk.card_buttons, 1) if text in title)

    step("A list asked for in a group is an interactive card in the group (no 1:1 detour)")
    await talk.say("list", group=True)
    sports, lunch = button("Sports"), button("食堂")
    step("You press Sports Club: your result and your Undo appear on the card, for you only")
    await talk.press(sports)
    step("A colleague presses the same button: their own subscription, their own result")
    await talk.press_card(sports, COLLEAGUE_STAFF_ID)
    step("The card as you see it meanwhile: the public count changed, your result stayed yours")
    talk.show_card(talk.card, DEMO_STAFF_ID, "bot (the card, as you see it)")
    step("You press Undo")
    await talk.press(button("Undo"))
    step("DingTalk is slow: the press is answered at once (empty), the card updated by PUT after that answer")
    sandbox.api_latency["unsubscribe"] = 1.7
    await talk.press(lunch)
    sandbox.api_latency.clear()
    step("Unsubscribe all: the preview's Confirm button works for you only")
    await talk.say("unsubscribe all", group=True)
    await talk.press_card(1, COLLEAGUE_STAFF_ID)
    await talk.press(1)
    await talk.press(button("Undo"))
    # last: after a refusal only the admin can fix, the card API is not asked again for a while
    step("The template is unpublished: today's card instead, and one log line says what the admin should fix")
    sandbox.cards.templates[TEMPLATE_ID] = False
    await talk.say("list", group=True)


def seed_isv(sandbox: Sandbox) -> None:
    """Two organizations, each with its own "manager" (a staff id is unique only within an organization)."""
    sandbox.robot_codes = {ISV_ROBOT_CODE}
    for corp_id, name in [*ISV_ORGANIZATIONS.items(), (ISV_STRANGER, "Initech")]:
        union_id = f"{name.lower()}ManagerUnion"
        sandbox.add_org_user(corp_id, "manager", union_id)
        for calendar_id, summary in [(f"cal-{name.lower()}-holidays", f"{name} Holidays"), ("cal-lunch", "食堂菜单")]:
            sandbox.add_calendar(calendar_id, summary)
            sandbox.subscribe(union_id, calendar_id)


async def play_isv(talk: Conversation) -> None:
    sandbox, step = talk.sandbox, talk.heading
    acme, globex = ISV_ORGANIZATIONS

    async def say(corp_id: str, text: str) -> None:
        await talk.say(text, staff_id="manager", chatbotCorpId=corp_id, senderCorpId=corp_id, robotCode=ISV_ROBOT_CODE)

    async def event(what: str, pushed: Any) -> None:
        ack = await sandbox.wait_ack(await pushed)
        print(f"  (DingTalk: {what}; the bot ACKs {ack['data']})\n", file=talk.out, flush=True)

    sandbox.authorized_corps.add(acme)
    step("Acme's manager writes before DingTalk pushed the suite ticket")
    await say(acme, "list")
    step("DingTalk pushes the suite ticket (every 5 hours, or when the admin re-pushes it); Acme and Globex authorize")
    await event("suite_ticket", sandbox.push_suite_ticket())
    await event("org_suite_auth from Acme", sandbox.authorize_corp(acme, "Acme"))
    await event("org_suite_auth from Globex", sandbox.authorize_corp(globex, "Globex"))
    step("Acme's manager lists their calendars (the bot fetches Acme's token with the ticket)")
    await say(acme, "list")
    step("Globex's manager has the same staff id: another person, another token, another cache entry")
    await say(globex, "list")
    step("Each unsubscribes; the tokens are reused")
    await say(acme, "unsubscribe Acme Holidays")
    await say(globex, "取消订阅 食堂菜单")
    fetched = [request.json()["authCorpId"] for request in sandbox.calls("corpAccessToken")]
    print(f"  (organization tokens fetched: {', '.join(fetched)}: one per organization)\n", file=talk.out)
    step("Someone in an organization that never authorized the app")
    await say(ISV_STRANGER, "list")
    step("Globex removes the app: its token and cached data are dropped")
    await event("org_suite_relieve from Globex", sandbox.relieve_corp(globex))
    await say(globex, "list")
    step("Acme is not affected")
    await say(acme, "list")


async def play_interactive(talk: Conversation) -> None:
    print(
        "Type a message as the demo user. A number presses that button of the last card; start a line with",
        "'/group ' to write in a group; '/colleague 2' presses button 2 of the last interactive card (--cards) as a",
        "colleague; 'quit', Ctrl-D or Ctrl-C ends.\n",
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
        elif line.startswith("/colleague ") and line.split()[-1].isdigit() and talk.card_buttons:
            number = int(line.split()[-1])
            if 1 <= number <= len(talk.card_buttons):
                talk.sandbox.add_user(COLLEAGUE_STAFF_ID, COLLEAGUE_UNION_ID)
                await talk.press_card(number, COLLEAGUE_STAFF_ID)
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


def user_token_settings(sandbox: Sandbox) -> dict[str, str]:
    """BOT_CALENDAR_TOKEN=user on a free loopback port, consent asked of the sandbox's authorize page."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {
        "BOT_CALENDAR_TOKEN": "user",
        "BOT_SECRET_KEY": secrets.token_urlsafe(48),
        "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "DINGTALK_LOGIN_BASE": sandbox.base_url,
    }


async def run(
    interactive: bool,
    out: TextIO,
    width: int = FRAME_WIDTH[1],
    user_tokens: bool = False,
    isv: bool = False,
    cards: bool = False,
) -> int:
    """Play the demo; on Ctrl-C stop at once and return INTERRUPTED_EXIT."""
    sandbox = Sandbox()
    await sandbox.start()
    if isv:
        seed_isv(sandbox)
    else:
        seed(sandbox)
    settings = {name: value for name, (value, _) in DEMO_SETTINGS.items()}
    if user_tokens:
        settings.update(user_token_settings(sandbox))
    if isv:
        settings["DINGTALK_APP_TYPE"] = "isv"
    if cards:
        settings["BOT_CARD_TEMPLATE_ID"] = TEMPLATE_ID  # the sandbox's published import of the shipped template
    # the demo's previews and audit records are thrown away with it, not left in the current directory
    state = tempfile.TemporaryDirectory(prefix="calbot-demo-")  # removed when the process ends
    app = App(Config.from_env({**sandbox.bot_env(), **settings, "BOT_STATE_DIR": state.name}))
    runner = asyncio.create_task(app.run())
    # Ctrl-C sets an event rather than cancelling the script: a cancellation can be lost inside asyncio.wait_for
    # on Python 3.11 when what it waits for finishes at the same moment, and the script would play on.
    interrupted = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)
    script = asyncio.create_task(play(sandbox, interactive, out, width, user_tokens, isv, cards))
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


async def play(
    sandbox: Sandbox,
    interactive: bool,
    out: TextIO,
    width: int,
    user_tokens: bool = False,
    isv: bool = False,
    cards: bool = False,
) -> None:
    await sandbox.wait_connected()
    announce_settings(sandbox, out)
    if isv:
        print("DINGTALK_APP_TYPE=isv: one third-party enterprise app serving several organizations.\n", file=out)
    talk = Conversation(sandbox, out, width)
    if isv:
        await play_isv(talk)
    elif user_tokens and not interactive:
        await play_user_tokens(talk)
    elif cards and not interactive:
        await play_cards(talk)
    else:
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


def main(interactive: bool = False, user_tokens: bool = False, isv: bool = False, cards: bool = False) -> int:
    logs.configure(DEMO_SETTINGS["LOG_LEVEL"][0])
    columns = shutil.get_terminal_size((FRAME_WIDTH[1], 24)).columns
    width = min(max(columns, FRAME_WIDTH[0]), FRAME_WIDTH[1])
    try:
        code = asyncio.run(run(interactive, sys.stdout, width, user_tokens, isv, cards))
    except KeyboardInterrupt:  # Ctrl-C before the demo's own handler is in place
        code = INTERRUPTED_EXIT
    except BrokenPipeError:
        silence_stdout()
        return SIGPIPE_EXIT
    if code == INTERRUPTED_EXIT:
        print("\ninterrupted", file=sys.stderr)
    return code
