"""The loopback DingTalk answers as DingTalk documents it, seen through the real bot's cards."""

from __future__ import annotations

import pytest

from bot.sandbox.platform import Sandbox
from tests.helpers import card, converse, new_user

pytestmark = pytest.mark.usefixtures("bot")


async def test_the_sandbox_itself_answers_the_documented_errors(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    sandbox.add_calendar("cal-board-only", "Board", scope={"someone-else"})
    cases = {
        "cal-board-only": "🚫 Not in this calendar's subscription scope",
        f"primary-{user.union_id}": "🚫 Not a subscribed calendar",
        "cal-does-not-exist": "❓ No calendar called that",
    }
    for calendar_id, title in cases.items():
        _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id))
        assert card(reply)["title"] == title
