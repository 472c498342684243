"""A sessionWebhook whose host never completes the TCP handshake: nothing was sent, so the card goes another way."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from tests.helpers import new_user, running_bot, started_sandbox


@contextmanager
def unreachable_host() -> Iterator[str]:
    """A listening socket that never accepts, its accept queue already full: the kernel drops further SYNs, so a
    connection attempt hangs as it does towards a host behind a firewall that drops packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for open_socket in [*fillers, listener]:
            open_socket.close()


async def test_a_webhook_whose_connection_never_opens_is_answered_through_the_robot_openapi() -> None:
    """A connect that times out sent nothing: unlike a post that got no answer, the card is sent again (the robot
    OpenAPI once the webhook's share of the reply's time is spent), never lost."""
    with unreachable_host() as host:
        env = {
            "BOT_RETRY_PAUSE_SCALE": "0.01",
            "DINGTALK_OAPI_BASE": host,
            "BOT_HTTP_TIMEOUT": "1",
            "BOT_COMMAND_TIMEOUT": "4",
        }
        async with started_sandbox() as sandbox:
            user = new_user(sandbox)
            data = sandbox.chat("help", user.staff_id, sessionWebhook=f"{host}/robot/sendBySession?session=s1")
            async with running_bot(sandbox, {**sandbox.bot_env(), **env}) as bot:
                await sandbox.wait_ack(await sandbox.push(data))
                handled = await bot.wait_log("message handled", timeout=15, msg_id=data["msgId"])

            [sent] = sandbox.delivered(data)
            assert sent.api == "batchSend" and json.loads(sent.json()["msgParam"])["title"] == "📅 Calendar bot"
            assert handled["route"] != "failed"
