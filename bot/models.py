"""The shared vocabulary: Tenant, Message, Command, Calendar, Action, Outcome, Reply, Button and Card (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ONE_TO_ONE = "1"
GROUP = "2"


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who acts, from platform fields only: the organization (corpId), the staff id within it, and the unionId when
    the platform gave it. A staff id is unique only within its organization, so the two always go together."""

    organization: str
    staff_id: str
    union_id: str = ""

    @property
    def key(self) -> str:
        """The tenant's one spelling in every store key (bot.stores.keys): `corpId:staffId`."""
        return f"{self.organization}:{self.staff_id}"


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
    sender_id: str  # DingTalk's opaque sender id: present even for members of other organizations
    sender_corp_id: str
    chatbot_corp_id: str
    session_webhook: str
    session_webhook_expires_ms: int
    is_in_at_list: bool = False
    robot_code: str = ""  # the robot the message was sent to: the one that answers through the robot OpenAPI
    per_organization: bool = False  # an ISV app's: msgIds are told apart per organization (see `key`)
    card: str = ""  # a button press on an interactive card: that card's outTrackId, where the answer goes

    @property
    def is_group(self) -> bool:
        return self.conversation_type == GROUP

    @property
    def tenant(self) -> Tenant:
        """The sender as a tenant: the robot's organization (the sender's when the platform named only that)."""
        return Tenant(self.chatbot_corp_id or self.sender_corp_id, self.sender_staff_id, self.sender_union_id)

    @property
    def key(self) -> str:
        """What makes two deliveries "the same message" for the journal, the inbox and admission alike: the msgId,
        and for an ISV app (many organizations on one Stream) the robot's organization with it."""
        return f"{self.chatbot_corp_id}:{self.msg_id}" if self.per_organization else self.msg_id

    @property
    def sender_key(self) -> str:
        """Who to count a command against for the per-user rate limit: a staff id is unique only within its
        organization (an ISV app serves many), so the robot's organization is part of the key. A sender without one
        (from another organization) is counted by DingTalk's opaque sender id, within the robot's organization."""
        if self.sender_staff_id:
            return self.tenant.key
        return Tenant(self.chatbot_corp_id or self.sender_corp_id, self.sender_id or self.conversation_id).key


@dataclass(frozen=True, slots=True)
class Command:
    """What the user asked for, parsed from text: a name, its argument and the language it was asked in."""

    name: str  # a key of bot.handlers.HANDLERS: "help", "list", "unsubscribe", "whoami", "stats", ...
    locale: str
    argument: str = ""
    understood: bool = True


@dataclass(frozen=True, slots=True)
class Calendar:
    """One of a user's calendars as DingTalk lists it."""

    id: str
    name: str
    type: str  # "primary", "subscribed", "shared" or "unknown"


@dataclass(frozen=True, slots=True)
class Action:
    """A one-tap follow-up offered on a card: a command on one calendar, sent as the user when pressed."""

    command: str  # "unsubscribe", "resubscribe", or "confirm" / "undo" with a bulk token
    calendar_id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """One EVENT push of the Stream (an ISV app's suite ticket, an organization's authorization changes)."""

    event_type: str
    event_id: str
    corp_id: str  # headers.eventCorpId: the organization the event is about
    data: dict[str, Any]
    born_ms: int = 0  # headers.eventBornTime: when DingTalk made it (a late push of an older event has an older one)


class Outcome(StrEnum):
    """What became of a command: each has a card template of the same name in every locale."""

    ADMINS_ONLY = "admins_only"
    AMBIGUOUS = "ambiguous"
    APP_NOT_READY = "app_not_ready"
    AUDIT = "audit"
    APP_LACKS_PERMISSION = "app_lacks_permission"
    BATCH = "batch"
    BULK_EXPIRED = "bulk_expired"
    BULK_PREVIEW = "bulk_preview"
    BUSY = "busy"
    CALENDAR_ID_MISSING = "calendar_id_missing"
    CALENDARS = "calendars"
    CONNECT_ACCOUNT = "connect_account"
    DINGTALK_ERROR = "dingtalk_error"
    DISCONNECTED = "disconnected"
    FOREIGN_SENDER = "foreign_sender"
    HELP = "help"
    INTERNAL_ERROR = "internal_error"
    INVALID_CALENDAR_ID = "invalid_calendar_id"
    NO_CALENDARS = "no_calendars"
    NO_MATCH = "no_match"
    NOT_IN_SCOPE = "not_in_scope"
    NOT_SUBSCRIBABLE = "not_subscribable"
    ORG_NOT_AUTHORIZED = "org_not_authorized"
    ORG_QUOTA_EXHAUSTED = "org_quota_exhausted"
    RESUBSCRIBED = "resubscribed"
    SENDER_UNKNOWN = "sender_unknown"
    SENT_PRIVATELY = "sent_privately"
    SLOW_DOWN = "slow_down"
    STATS = "stats"
    SUBSCRIBE_LIMIT = "subscribe_limit"
    TEMPORARY_PROBLEM = "temporary_problem"
    TOO_MANY_CALENDARS = "too_many_calendars"
    UNKNOWN_CALENDAR = "unknown_calendar"
    UNSUBSCRIBED = "unsubscribed"
    WHOAMI = "whoami"


class Verdict(StrEnum):
    """What becomes of a message before its command runs (admission: duplicate claim, then the sender's limit)."""

    ALLOW = "allow"
    SLOW_DOWN = "slow_down"  # the sender's first command over the limit in a window: told so, once
    DROP = "drop"  # over the limit and already told: nothing is sent back
    TAKEN = "taken"  # a copy of this message was claimed before (by another dyno): not handled here


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler decided: an outcome (one template per outcome), the data it shows, follow-up actions."""

    outcome: Outcome
    data: dict[str, Any] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    private: bool = False  # in a group, sent to the sender 1:1 (admin answers, personal details)


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
    interactive: bool = False  # it offers actions, as buttons or as links in the markdown
