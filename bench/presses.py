"""Card presses against typed commands through the real `python -m bot`: CPU per press and per command (same run),
DingTalk calls for a list and one unsubscribe today and with cards, card calls paced by the per-API limiter.
Usage: python bench/presses.py [--count N] [--rounds R]"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Contender  # noqa: E402
from bot.sandbox.cards import TEMPLATE_ID  # noqa: E402
from bot.sandbox.platform import Sandbox  # noqa: E402

CARDS = {"BOT_CARD_TEMPLATE_ID": TEMPLATE_ID}
QUIET = {"LOG_LEVEL": "WARNING", "BOT_USER_RATE": "100000"}
SETUP_APIS = frozenset({"gateway", "accessToken", "connect"})  # once per process, not per command


def bot(sandbox: Sandbox, env: dict[str, str]) -> Contender:
    return Contender([sys.executable, "-m", "bot"], {**sandbox.bot_env(), **QUIET, "BOT_API_QPS": "100000", **env})


def person(sandbox: Sandbox, name: str) -> tuple[str, str, str]:
    staff, union, calendar = f"{name}s", f"{name}u", f"{name}c"
    sandbox.add_user(staff, union)
    sandbox.add_calendar(calendar, name[-8:])
    sandbox.subscribe(union, calendar)
    return staff, union, calendar


async def cards_for(sandbox: Sandbox, staff_ids: list[str]) -> list[str]:
    """Each sender lists their calendars 1:1: one interactive card each; their outTrackIds, in order."""
    for staff in staff_ids:
        await sandbox.push(sandbox.chat("list", staff))
    await sandbox.wait_for(lambda: all(sandbox.cards.in_space(staff) for staff in staff_ids), timeout=120)
    return [sandbox.cards.in_space(staff)[0] for staff in staff_ids]


async def press_all(sandbox: Sandbox, pressers: list[tuple[str, str]]) -> None:
    """Every (card, presser) presses the card's first row at once; done when each card changed for its presser."""
    before = {track: sandbox.cards.instances[track].versions for track, _ in pressers}
    for track, staff in pressers:
        await sandbox.press_card(track, staff, {"action": "unsubscribe", "token": "0"})
    await sandbox.wait_for(lambda: all(sandbox.cards.instances[t].versions > v for t, v in before.items()), 120)


async def type_all(sandbox: Sandbox, messages: list[dict[str, Any]]) -> None:
    for data in messages:
        await sandbox.push(data)

    def answered(data: dict[str, Any]) -> bool:  # a card with buttons (Undo) is an interactive card with a template
        return bool(sandbox.replies_to(data) or sandbox.cards.in_space(data["senderStaffId"]))

    await sandbox.wait_for(lambda: all(answered(data) for data in messages), timeout=120)


async def cpu_round(count: int, number: int) -> tuple[float, float]:
    """ms of the bot's CPU per typed command (the text a button sends today) and per card press, one process."""
    sandbox = Sandbox(latency=0.002)
    await sandbox.start()
    contender = bot(sandbox, CARDS)
    await contender.start(sandbox)
    try:
        warm = [person(sandbox, f"r{number}w{n}") for n in range(20)]
        tracks = await cards_for(sandbox, [staff for staff, _, _ in warm])
        await press_all(sandbox, [(track, staff) for track, (staff, _, _) in zip(tracks, warm, strict=True)])
        typed = [person(sandbox, f"r{number}t{n}") for n in range(count)]
        pressing = [person(sandbox, f"r{number}p{n}") for n in range(count)]
        for staff, _, _ in typed:  # their unionIds are looked up once, as the pressers' are by their list
            await type_all(sandbox, [sandbox.chat("whoami", staff)])
        tracks = await cards_for(sandbox, [staff for staff, _, _ in pressing])
        messages = [sandbox.chat(f'unsubscribe "{calendar}"', staff) for staff, _, calendar in typed]
        start = contender.cpu_seconds()
        await type_all(sandbox, messages)
        typed_ms = (contender.cpu_seconds() - start) / count * 1000
        start = contender.cpu_seconds()
        await press_all(sandbox, [(track, staff) for track, (staff, _, _) in zip(tracks, pressing, strict=True)])
        press_ms = (contender.cpu_seconds() - start) / count * 1000
        return typed_ms, press_ms
    finally:
        await contender.stop()
        await sandbox.close()


async def calls(env: dict[str, str]) -> Counter[str]:
    """DingTalk calls for one person: `list`, then one unsubscribe from it (today: the button's message)."""
    sandbox = Sandbox()
    await sandbox.start()
    contender = bot(sandbox, env)
    await contender.start(sandbox)
    try:
        staff, union, calendar = person(sandbox, "calls")
        since = len(sandbox.requests)
        data = sandbox.chat("list", staff)
        await sandbox.push(data)
        if env:
            await sandbox.wait_for(lambda: sandbox.cards.in_space(staff))
            await press_all(sandbox, [(sandbox.cards.in_space(staff)[0], staff)])
        else:
            await sandbox.wait_reply(data)
            await type_all(sandbox, [sandbox.chat(f'unsubscribe "{calendar}"', staff)])
        await sandbox.wait_for(lambda: calendar not in sandbox.subscriptions[union])
        return Counter(r.api for r in sandbox.requests[since:] if r.api not in SETUP_APIS)
    finally:
        await contender.stop()
        await sandbox.close()


async def paced(qps: int, count: int, bot_qps: int) -> dict[str, Any]:
    """A burst of lists against a platform limit of `qps` calls per second per API, the bot's limiter at `bot_qps`:
    at the same limit nothing is refused (card calls paced like any other), far above it DingTalk refuses some."""
    sandbox = Sandbox(qps_limit=qps)
    await sandbox.start()
    contender = bot(sandbox, {**CARDS, "BOT_API_QPS": str(bot_qps), "BOT_COMMAND_TIMEOUT": "60"})
    await contender.start(sandbox)
    try:
        staff_ids = [person(sandbox, f"q{n}")[0] for n in range(count)]
        await cards_for(sandbox, staff_ids)
        return {"cards": len(sandbox.calls("card/createAndDeliver")), "throttled": sandbox.throttled}
    finally:
        await contender.stop()
        await sandbox.close()


async def main(options: argparse.Namespace) -> None:
    rounds = [await cpu_round(options.count, number) for number in range(options.rounds)]
    typed = statistics.median(ms for ms, _ in rounds)
    pressed = statistics.median(ms for _, ms in rounds)
    ratios = sorted(press / type_ for type_, press in rounds)
    print(f"CPU per typed command {typed:.2f} ms, per press {pressed:.2f} ms (medians of {options.rounds} rounds of")
    print(f"  {options.count} each, one process); press/typed per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    today, with_cards = await calls({}), await calls(CARDS)
    print(f"DingTalk calls, list + one unsubscribe: today {sum(today.values())} {json.dumps(dict(today))}")
    print(f"  with cards {sum(with_cards.values())} {json.dumps(dict(with_cards))}")
    print(f"30 lists, platform limit 5/s per API: BOT_API_QPS=5 {await paced(5, 30, 5)}, ", end="")
    print(f"BOT_API_QPS=100000 {await paced(5, 30, 100_000)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--count", type=int, default=200, help="typed commands and presses per round")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
