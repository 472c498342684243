"""A command's progress, step by step: what an earlier, interrupted handling of the same message already did."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.models import Action, Outcome, Reply

# of the time left, waited for a step that must be durable before the bot goes on (a calendar change's, the card's)
LANDING_SHARE = 0.5
Save = Callable[[str, str, Any], Awaitable[None]]
Land = Callable[[str, str, Any, float], Awaitable[bool]]  # the journal's record_held


class StepHeldBack(Exception):
    """A step that must be durable before the bot goes on (a calendar change about to be asked of DingTalk) could not
    be written, or another process has taken the message over: the command is left to whoever resumes it."""


class Progress:
    """The steps of one message's handling: each recorded (durably, when a journal keeps it) before going on, so a
    resumed handling finds what its predecessor finished. Values are JSON."""

    def __init__(
        self,
        msg_id: str = "",
        recorded: dict[str, Any] | None = None,
        save: Save | None = None,
        scope: str = "",
        land: Land | None = None,
    ) -> None:
        self._msg_id = msg_id
        self._recorded = recorded if recorded is not None else {}
        self._save = save
        self._scope = scope
        self._land = land

    def recorded(self, key: str) -> Any:
        """The value an earlier step stored under `key`, or None."""
        return self._recorded.get(self._scope + key)

    async def record(self, key: str, value: Any) -> None:
        self._recorded[self._scope + key] = value
        if self._save is not None:
            await self._save(self._msg_id, self._scope + key, value)

    async def record_held(self, key: str, value: Any, seconds: float) -> None:
        """Record a step that must have landed before the bot goes on; StepHeldBack when it has not within `seconds`
        (a kill after a change asked for with its step unwritten would let the resumption ask for it again)."""
        self._recorded[self._scope + key] = value
        if self._land is not None and not await self._land(self._msg_id, self._scope + key, value, seconds):
            raise StepHeldBack

    def scoped(self, name: str) -> Progress:
        """The same progress, for one part of the command (one calendar it names): its keys kept apart."""
        return Progress(self._msg_id, self._recorded, self._save, f"{self._scope}{name}/", self._land)


def reply_to_json(reply: Reply) -> dict[str, Any]:
    actions = [[action.command, action.calendar_id, action.name] for action in reply.actions]
    return {"outcome": reply.outcome.value, "data": reply.data, "actions": actions}


def reply_from_json(value: dict[str, Any]) -> Reply:
    actions = tuple(Action(command, calendar_id, name) for command, calendar_id, name in value["actions"])
    return Reply(Outcome(value["outcome"]), value["data"], actions)
