"""The shared vocabulary: Message, Command, Reply, Button and Card (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ONE_TO_ONE = "1"
GROUP = "2"


@dataclass(frozen=True, slots=True)
class Message:
    """One chatbot message as the platform delivered it; identity fields come only from here."""

    msg_id: str
    text: str | None  # None for picture, audio, file, video and richText without text
    msgtype: str
    conversation_type: str
    conversation_id: str
    sender_staff_id: str
    sender_union_id: str
    sender_corp_id: str
    chatbot_corp_id: str
    session_webhook: str
    session_webhook_expires_ms: int
    is_in_at_list: bool = False

    @property
    def is_group(self) -> bool:
        return self.conversation_type == GROUP


@dataclass(frozen=True, slots=True)
class Command:
    """What the user asked for, parsed from text: a name, its argument and the language it was asked in."""

    name: str  # "help" or "unsubscribe"
    locale: str
    argument: str = ""
    understood: bool = True


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler decided: an outcome (one template per outcome) and the data the template shows."""

    outcome: str
    data: dict[str, Any] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class Button:
    """A card button: its label and the link it opens."""

    title: str
    url: str


@dataclass(frozen=True, slots=True)
class Card:
    """A rendered card: a title for the conversation list, a markdown body and optional buttons."""

    title: str
    markdown: str
    buttons: tuple[Button, ...] = ()
