"""The shipped card template: the card platform's export format, and the variables the bot fills are the template's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.cards.interactive import private_data, public_data
from bot.models import Action, Outcome, Reply

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "cards" / "calendar-card.json"


def editor() -> dict[str, Any]:
    exported = json.loads(TEMPLATE.read_text("utf-8"))
    assert isinstance(exported["editorData"], str)  # the builder's export holds its editor data as a JSON string
    assert exported["type"] == "im" and exported["mode"] == "card"
    data: dict[str, Any] = json.loads(exported["editorData"])
    return data


def variables() -> dict[str, bool]:
    return {variable["name"]: variable["private"] for variable in editor()["variableList"]}


def components(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for node in tree:
        found.append(node)
        found += components(node.get("children", []))
    return found


def test_the_bots_public_and_private_data_are_the_templates_public_and_private_variables() -> None:
    reply = Reply(
        Outcome.UNSUBSCRIBED, {"calendar_id": "c1", "name": "N", "request_id": "r"}, (Action("resubscribe", "c1", "N"),)
    )

    public, _ = public_data(reply, "en", "asker")
    private = private_data(reply, "en", (Action("resubscribe", "c1", "N"), "utoken"))

    assert {name: variables()[name] for name in public} == dict.fromkeys(public, False)
    assert {name: variables()[name] for name in private} == dict.fromkeys(private, True)
    assert set(public) | set(private) == set(variables())


def test_every_button_sends_back_a_request_with_the_action_and_the_token() -> None:
    buttons = [
        button
        for node in components(editor()["schema"]["componentsTree"])
        if node["componentName"] == "ButtonBlock"
        for button in node["props"]["buttons"]
    ]

    assert [button["id"] for button in buttons] == ["row", "undo"]
    for button in buttons:
        assert button["actionType"] == "request"  # 回传请求: the press comes back over Stream
        assert [param["name"] for param in button["params"]] == ["action", "token"]
    assert [param["variableType"] for param in buttons[0]["params"]] == ["loop", "loop"]  # the row's own item
    assert [param["variable"] for param in buttons[1]["params"]] == ["undo_action", "undo_token"]
