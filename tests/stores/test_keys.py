"""One tenant, one key builder: an ISV message is one key for admission, journal and inbox alike, and every key the
stores write to Redis starts with the app's one prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.auth.policy import policy_for
from bot.config import Config
from bot.models import Message, Tenant, Verdict
from bot.stores import keys
from bot.stores.audit import AuditRecord
from bot.stores.build import Stores, build_stores
from bot.stream.repeats import Repeats
from bot.stream.transport import message_from_callback
from tests.redisserver import RedisServer

SUITE = "suite-key"
ISV_ENV = {"DINGTALK_CLIENT_ID": SUITE, "DINGTALK_CLIENT_SECRET": "s", "DINGTALK_APP_TYPE": "isv"}


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def isv_stores(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Stores]:
    redis_url = redis_server.url if request.param == "redis" else ""
    config = Config.from_env({**ISV_ENV, "BOT_STATE_DIR": str(tmp_path), "REDIS_URL": redis_url})
    stores = build_stores(config, policy_for(config).per_organization)
    await stores.open()
    await stores.journal.open()
    yield stores
    await stores.journal.close()
    await stores.close()


def chat(corp_id: str, msg_id: str) -> Message:
    """A message as an ISV app's transport makes it from DingTalk's callback (the policy keys it per organization)."""
    data: dict[str, Any] = {
        "msgId": msg_id,
        "msgtype": "text",
        "text": {"content": "help"},
        "conversationType": "1",
        "conversationId": f"cid-{corp_id}",
        "senderStaffId": "staff1",
        "senderId": "sender1",
        "senderCorpId": corp_id,
        "chatbotCorpId": corp_id,
        "robotCode": "robot",
    }
    config = Config.from_env(ISV_ENV)
    return message_from_callback(data, "fallback", policy_for(config).per_organization)


async def test_an_isv_message_is_admitted_journaled_and_dropped_as_repeat_under_one_key(isv_stores: Stores) -> None:
    queued: list[Message] = []
    repeats = Repeats(isv_stores.journal, isv_stores.admission)
    first, other, repeat = chat("corpA", "same-id"), chat("corpB", "same-id"), chat("corpA", "same-id")

    for message in (first, other, repeat):
        if await repeats.delivered(message):  # the journal (before the ACK), then this process's ids
            queued.append(message)
    verdicts = [await repeats.admit(message, message.sender_key, None) for message in (first, other, repeat)]
    # a repeat the journal could not tell (written while it failed): this process's ids drop it
    queued_again = repeats.resumed(repeat)

    assert [message.chatbot_corp_id for message in queued] == ["corpA", "corpB"]  # the same msgId twice: two messages
    assert not queued_again and repeats.dropped == 3  # the journal's, admission's and this process's say
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.TAKEN]
    assert first.key == repeat.key == "corpA:same-id" != other.key
    if isv_stores.redis is not None:  # admission's claim and the journal's marker are one key, per organization
        written = await isv_stores.redis.send("KEYS", f"calbot:{SUITE}:*same-id")
        assert sorted(written) == [
            f"calbot:{SUITE}:{kind}:{corp}:same-id" for kind in ("jmsg", "msg") for corp in ("corpA", "corpB")
        ]


async def test_every_redis_key_the_stores_write_starts_with_the_apps_one_prefix(redis_server: RedisServer) -> None:
    config = Config.from_env({**ISV_ENV, "REDIS_URL": redis_server.url})
    stores = build_stores(config, per_organization=True)
    await stores.open()
    await stores.journal.open()
    tenant = Tenant("corp1", "staff1")
    await stores.admission.admit("corp1:m1", tenant.key)
    async with stores.limiter.slot(keys.api("corp1", "calendars")):
        pass
    await stores.tokens.put(keys.organization_token("corp1"), "t", 60)
    async with stores.tokens.fetching(keys.user_token(tenant.key)):
        await stores.tokens.put(keys.user_token(tenant.key), "u", 60)
    await stores.union_ids.put(keys.union_id(tenant, per_organization=True), "union1")
    await stores.suite_tickets.store(SUITE, "ticket")
    await stores.user_grants.put(keys.pending_connect(tenant.key), b"pending")
    await stores.previews.save("preview", tenant.key, "token1", {}, 60)
    await stores.audits.record(AuditRecord(1e9, "unsubscribe", "staff1", "corp1", "u", "c", "N", "ok", "", "", "m1"))
    await stores.journal.add(chat("corp1", "m1"))
    await stores.forget_organization("corp9")  # the note for the other dynos
    assert stores.redis is not None
    written = await stores.redis.send("KEYS", "*")
    await stores.journal.close()
    await stores.close()

    concerns = {key.removeprefix(f"calbot:{SUITE}:").split(":")[0] for key in written}
    assert {"msg", "user", "api", "token", "union", "suite-ticket", "grant", "pending", "audit", "jmsg"} <= concerns
    assert [key for key in written if not key.startswith(f"calbot:{SUITE}:")] == []
