"""Who sent a message: the sender's unionId from platform fields only, looked up once and cached."""

from __future__ import annotations

from bot.auth.api import DingTalkApi
from bot.models import Message
from bot.stores import keys
from bot.stores.union_ids import UnionIds


class ForeignSender(Exception):
    """The sender is not a member of the bot's organization, or the platform did not say who they are."""


class UserDirectory:
    """Maps a sender to their unionId, trusting only what DingTalk put in the message."""

    def __init__(self, union_ids: UnionIds, *, per_organization: bool = False) -> None:
        self._union_ids = union_ids
        # a staff id is unique only within its organization: an ISV app keys unionIds by organization too
        self._per_organization = per_organization

    async def union_id(self, message: Message, dingtalk: DingTalkApi) -> str:
        if not is_member(message):
            raise ForeignSender
        if message.sender_union_id:
            return message.sender_union_id
        key = keys.union_id(message.tenant, self._per_organization)
        cached = await self._union_ids.get(key)
        if cached is not None:
            return cached
        union_id = await dingtalk.union_id(message.sender_staff_id)
        await self._union_ids.put(key, union_id)
        return union_id


def is_member(message: Message) -> bool:
    """A member has a staff id (DingTalk sets it only for the robot's own organization). Both corp ids are optional:
    only two that are present and differ mark a sender from another organization."""
    corps = (message.sender_corp_id, message.chatbot_corp_id)
    return bool(message.sender_staff_id) and not (all(corps) and corps[0] != corps[1])
