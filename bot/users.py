"""Who sent a message: the sender's unionId from platform fields, looked up once and cached."""

from __future__ import annotations

from collections import OrderedDict

from bot.dingtalk import DingTalkClient
from bot.models import Message

CACHE_SIZE = 50_000  # far more than the employees of one company; an unionId never changes


class ForeignSender(Exception):
    """The sender is not a member of the bot's organization, or the platform did not say who they are."""


class UserDirectory:
    """Maps a sender to their unionId, trusting only what DingTalk put in the message."""

    def __init__(self, dingtalk: DingTalkClient) -> None:
        self._dingtalk = dingtalk
        self._union_ids: OrderedDict[str, str] = OrderedDict()

    async def union_id(self, message: Message) -> str:
        if not message.sender_staff_id or message.sender_corp_id != message.chatbot_corp_id:
            raise ForeignSender
        if message.sender_union_id:
            return message.sender_union_id
        staff_id = message.sender_staff_id
        cached = self._union_ids.get(staff_id)
        if cached is not None:
            self._union_ids.move_to_end(staff_id)
            return cached
        union_id = await self._dingtalk.union_id(staff_id)
        self._union_ids[staff_id] = union_id
        if len(self._union_ids) > CACHE_SIZE:
            self._union_ids.popitem(last=False)
        return union_id
