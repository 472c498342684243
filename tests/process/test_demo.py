"""The demo as a person meets it: cards drawn as a client shows them, Ctrl-C and a closed pipe end it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest_asyncio

from bot.cards.view import width_of
from tests.botprocess import ROOT

DEMO_WIDTH = 64  # columns of the demo's "terminal": narrow enough that many lines wrap


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def transcript() -> str:
    """One scripted demo run's output."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "demo",
        cwd=ROOT,
        env={**os.environ, "COLUMNS": str(DEMO_WIDTH)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(demo.communicate(), 60)
    assert demo.returncode == 0, stderr.decode()
    assert stderr.decode() == ""
    return stdout.decode()


async def test_the_demo_draws_cards_without_tags_in_unbroken_frames(transcript: str) -> None:
    rows = [line for line in transcript.splitlines() if line.startswith(("  ┌", "  │", "  └"))]

    assert "<font" not in transcript and "</font>" not in transcript and "&lt;" not in transcript
    assert "###" not in transcript and "**" not in transcript  # headings and bold rendered, as a client does
    assert len(rows) > 100
    assert {width_of(row) for row in rows} == {DEMO_WIDTH}  # two columns of margin, the frame's own edges
    assert "│ 你已不再订阅" in transcript and "│ 食堂菜单（cal-lunch），" in transcript  # bold rendered, not **


async def test_the_cards_demo_updates_the_pressed_card_in_place_for_its_presser() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--cards"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": str(DEMO_WIDTH)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "bot (card, in the group)" in out and "bot (updated for you, in the answer)" in out
    assert "bot (updated for colleague, in the answer)" in out and "by PUT after the answer" in out
    assert "Undo: Sports Club" in out and "👥 Used by 2" in out and "###" not in out and "**" not in out
    assert shown.stderr == "" and out.count("interactive card refused") == 1 and "param.templateUnpublished" in out


async def test_the_demo_says_which_settings_it_changes(transcript: str) -> None:
    start = transcript.split("──", 1)[0]

    assert "BOT_COMMAND_TIMEOUT=2 (default 20)" in start
    assert "BOT_USER_RATE=30 (default 10)" in start


async def test_the_demo_shows_the_per_user_limit_and_the_organizations_quota(transcript: str) -> None:
    flood, _, after = transcript.partition("colleague (1:1)> help   … 30 times within a second: 30 answers")
    quota = flood.rpartition("── The organization's monthly DingTalk API quota is used up")[2]

    assert after.split("\n── ")[0].count("🐢 Slow down, please") == 1
    assert "Forbidden.AccessDenied.ApiCountLimitForOrg" in quota
    assert "⏳ DingTalk is busy" not in quota  # never retried as if DingTalk were busy


async def start_demo(*arguments: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "demo",
        *arguments,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(process: asyncio.subprocess.Process, text: str) -> None:
    assert process.stdout is not None
    await asyncio.wait_for(process.stdout.readuntil(text.encode()), 30)


async def test_ctrl_c_while_a_command_is_retrying_exits_at_once_with_130() -> None:
    demo = await start_demo()
    assert demo.stdout is not None and demo.stderr is not None
    await read_until(demo, "DingTalk keeps failing")
    await read_until(demo, "you (1:1)> unsubscribe cal-offsite-east\n")  # retried for the next two seconds

    demo.send_signal(signal.SIGINT)

    assert await asyncio.wait_for(demo.wait(), 1.5) == 130
    assert "Traceback" not in (await demo.stderr.read()).decode()
    assert "unfinished" not in (await demo.stdout.read()).decode()


async def test_ctrl_c_as_a_card_arrives_is_never_lost() -> None:
    """A cancellation that lands as an awaited reply arrives can be swallowed by asyncio.wait_for (Python 3.11);
    about every second run hit that window before Ctrl-C became an event, so three runs side by side."""

    async def interrupt_as_a_card_arrives() -> int:
        demo = await start_demo()
        await read_until(demo, "you (1:1)> unsubscribe cal-offsite-east\n  ┌")
        demo.send_signal(signal.SIGINT)
        return await asyncio.wait_for(demo.wait(), 1.5)

    assert await asyncio.gather(*(interrupt_as_a_card_arrives() for _ in range(3))) == [130, 130, 130]


async def test_ctrl_c_while_the_interactive_demo_waits_for_typing_exits_at_once_with_130() -> None:
    demo = await start_demo("--interactive")
    assert demo.stderr is not None
    await read_until(demo, "you> ")

    demo.send_signal(signal.SIGINT)

    assert await asyncio.wait_for(demo.wait(), 1.5) == 130
    assert "Traceback" not in (await demo.stderr.read()).decode()


def test_piped_into_head_it_ends_without_a_traceback() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert demo.stdout is not None and demo.stderr is not None
    head = subprocess.Popen(["head", "-n", "5"], stdin=demo.stdout, stdout=subprocess.PIPE)
    demo.stdout.close()  # only head reads it now; it closes its end after five lines

    shown, _ = head.communicate(timeout=30)

    assert demo.wait(timeout=30) == 141
    assert len(shown.decode().splitlines()) == 5
    assert demo.stderr.read().decode() == ""


def test_the_interactive_demo_with_cards_presses_a_card_as_you_and_as_a_colleague() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--interactive", "--cards"],
        cwd=ROOT,
        input="/group list\n2\n/colleague 2\nquit\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert shown.returncode == 0 and shown.stderr == ""
    assert "bot (card, in the group)" in shown.stdout and "bot (updated for you, in the answer)" in shown.stdout
    assert "bot (updated for colleague, in the answer)" in shown.stdout
