"""A process out of file descriptors through the real process: its card goes out once one is freed, or one error
line says why not; either way the command is finished and later messages are served."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import card, converse, new_user, running_process, started_sandbox

ENV = {
    "BOT_RETRY_PAUSE_SCALE": "0.01",
    "BOT_STREAM_RETRY_SECONDS": "0.1",
    "LOG_LEVEL": "DEBUG",
}
OUT_OF_DESCRIPTORS = "too many open files: no connection can be opened until descriptors are freed; retrying"
NOT_DELIVERED = "card not delivered: every route and retry failed"


async def test_a_card_that_finds_no_descriptor_goes_out_on_its_webhook_once_one_is_freed() -> None:
    env = {**ENV, "BOT_COMMAND_TIMEOUT": "8"}  # the webhook's half: 4 s
    async with started_sandbox() as sandbox:
        sandbox.close_connections = True  # every call needs a new connection: none is kept alive for it
        data = sandbox.chat("help", new_user(sandbox).staff_id)  # the first card of this process
        async with running_process(sandbox, env) as bot:
            limits = bot.exhaust_open_files()
            try:
                await sandbox.wait_ack(await sandbox.push(data))
                said = await bot.wait_log(OUT_OF_DESCRIPTORS, timeout=3)  # at once: the bot does not look hung
                assert sandbox.replies_to(data) == []
            finally:
                bot.restore_open_files(limits)
            handled = await bot.wait_log("message handled", msg_id=data["msgId"])
            _, later = await converse(sandbox, sandbox.chat("help", new_user(sandbox).staff_id))

        [reply] = sandbox.replies_to(data)
        assert (reply.api, card(reply)["title"]) == ("webhook", "📅 Calendar bot")
        assert handled["route"] == "webhook" and handled["retries"] >= 1
        assert said["level"] == "warning" and said["api"] == "webhook"
        assert later.api == "webhook"


async def test_a_card_that_finds_no_descriptor_in_its_time_is_one_error_line_and_the_entry_is_finished(
    tmp_path: Path,
) -> None:
    env = {**ENV, "BOT_COMMAND_TIMEOUT": "2", "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        sandbox.close_connections = True
        data = sandbox.chat("help", new_user(sandbox).staff_id)
        async with running_process(sandbox, env) as bot:
            limits = bot.exhaust_open_files()
            try:
                await sandbox.wait_ack(await sandbox.push(data))
                handled = await bot.wait_log("message handled", msg_id=data["msgId"])
            finally:
                bot.restore_open_files(limits)
            _, later = await converse(sandbox, sandbox.chat("help", new_user(sandbox).staff_id))
        async with running_process(sandbox, env) as second:  # nothing left to resume
            await second.wait_log("stream connected")

        assert (handled["route"], handled["reply_code"]) == ("failed", "TooManyOpenFiles")
        [line] = [entry for entry in bot.logs(NOT_DELIVERED) if entry["msg_id"] == data["msgId"]]
        assert (line["level"], line["reply_code"]) == ("error", "TooManyOpenFiles")
        assert len(bot.logs(OUT_OF_DESCRIPTORS)) == 1  # said once, not at every try
        assert sandbox.replies_to(data) == [] and later.api == "webhook"
        assert not second.logs("resuming unfinished commands")
