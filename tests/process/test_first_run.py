"""The first run as an admin meets it, through the real process: the start-up line, rejected credentials, why
DingTalk is unreachable, the Heroku process types and the README's promises."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.botprocess import ROOT, BotProcess
from tests.helpers import started_sandbox

ENV = {"BOT_RETRY_PAUSE_SCALE": "0.01", "BOT_STREAM_RETRY_SECONDS": "0.1"}
REDIS_PASSWORD = "hunter2-Redis-Password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_start_up_line_says_the_mode_an_internal_app_with_its_own_token_and_sqlite(tmp_path: Path) -> None:
    async with started_sandbox() as sandbox:
        bot = await BotProcess({**sandbox.bot_env(), **ENV, "BOT_STATE_DIR": str(tmp_path / "s")}).start()
        await sandbox.wait_connected()
        assert await bot.stop() == 0

    [starting] = bot.logs("bot starting")
    assert starting["level"] == "info"
    assert (starting["app_type"], starting["calendar_token"]) == ("internal", "app")
    assert starting["state"] == f"sqlite {tmp_path / 's'}"
    assert starting["admins"].startswith("none")


async def test_the_start_up_line_says_the_mode_isv_user_tokens_redis_without_its_password(tmp_path: Path) -> None:
    redis_port = free_port()  # nothing listens: the line is written before Redis is reached
    env = {
        **ENV,
        "DINGTALK_APP_TYPE": "ISV",
        "BOT_CALENDAR_TOKEN": "user",
        "BOT_PUBLIC_URL": "https://bot.example.com",
        "BOT_SECRET_KEY": "k3y-" + os.urandom(24).hex(),
        "PORT": str(free_port()),
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0",
        "BOT_ADMINS": "corp1:admin1,corp1:admin2",
    }
    async with started_sandbox() as sandbox:
        bot = await BotProcess({**sandbox.bot_env(), **env}).start()
        await bot.wait_log("bot starting")
        await bot.stop()

    [starting] = bot.logs("bot starting")
    assert (starting["app_type"], starting["calendar_token"]) == ("isv", "user")
    assert starting["state"] == f"redis 127.0.0.1:{redis_port}"
    assert starting["admins"] == "2 configured"
    assert REDIS_PASSWORD not in bot.output and REDIS_PASSWORD not in json.dumps(starting)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that takes the connection and never answers."""
    await reader.read()
    writer.close()


async def _plain_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that answers a TLS hello with plain text, as an http:// server on an https:// address does."""
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("why", ["dns", "refused", "tls", "timeout", "proxy"])
async def test_unreachable_says_why(why: str) -> None:
    server = None
    env = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret-value-1234", **ENV, "BOT_HTTP_TIMEOUT": "1"}
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens
    if why == "dns":
        base = "http://dingtalk-bot-test.invalid"  # RFC 2606: never resolves
    elif why in ("tls", "timeout"):
        server = await asyncio.start_server(_plain_text if why == "tls" else _silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        base = f"{'https' if why == 'tls' else 'http'}://127.0.0.1:{port}"
    elif why == "proxy":
        env["HTTP_PROXY"] = f"http://127.0.0.1:{free_port()}"  # the proxy is down, not DingTalk
    env["DINGTALK_API_BASE"] = env["DINGTALK_OAPI_BASE"] = base
    process = await BotProcess(env).start()
    try:
        failed = await process.wait_log("stream connection failed", timeout=20)
    finally:
        assert await process.stop() == 0
        if server is not None:
            server.close()

    assert failed["level"] == "warning" and failed["why"] == why
    assert failed["error"] == ("timeout" if why == "timeout" else "unreachable")


def procfile_command(kind: str) -> list[str]:
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    return shlex.split(lines[kind])


async def test_the_procfiles_web_process_serves_port_in_user_token_mode_as_heroku_runs_it(tmp_path: Path) -> None:
    assert procfile_command("web") == ["python", "-m", "bot"]
    port = free_port()
    async with started_sandbox() as sandbox:
        env = {
            **sandbox.bot_env(),
            **ENV,
            "DYNO": "web.1",
            "PORT": str(port),
            "BOT_CALENDAR_TOKEN": "user",
            "BOT_PUBLIC_URL": "https://my-bot.herokuapp.com",
            "BOT_SECRET_KEY": secrets.token_urlsafe(48),
            "BOT_STATE_DIR": str(tmp_path),
        }
        bot = await BotProcess(env).start()
        try:
            await bot.wait_log("serving the OAuth redirect", port=port)
            async with httpx.AsyncClient() as router:  # what Heroku's router does with the web dyno's $PORT
                answer = await router.get(f"http://127.0.0.1:{port}/")
        finally:
            assert await bot.stop() == 0
    assert answer.status_code == 200


WORKER_GETS_NO_REDIRECTS = (
    "this worker dyno's OAuth port is not reachable: Heroku routes $PORT to web dynos only, so users' consent needs a "
    "web dyno"
)


@pytest.mark.parametrize(("dyno", "warned"), [("worker.1", True), ("web.1", False)])
async def test_a_worker_dyno_in_user_token_mode_says_that_users_consent_needs_a_web_dyno(
    dyno: str, warned: bool, tmp_path: Path
) -> None:
    port = free_port()
    async with started_sandbox() as sandbox:
        env = {
            **sandbox.bot_env(),
            **ENV,
            "DYNO": dyno,  # app.json starts the worker: an admin who only sets BOT_CALENDAR_TOKEN=user gets this one
            "PORT": str(port),
            "BOT_CALENDAR_TOKEN": "user",
            "BOT_PUBLIC_URL": "https://my-bot.herokuapp.com",
            "BOT_SECRET_KEY": secrets.token_urlsafe(48),
            "BOT_STATE_DIR": str(tmp_path),
        }
        bot = await BotProcess(env).start()
        await bot.wait_log("serving the OAuth redirect", port=port)
        await sandbox.wait_connected()
        assert await bot.stop() == 0

    lines = bot.logs(WORKER_GETS_NO_REDIRECTS)
    assert len(lines) == int(warned)
    if warned:
        assert lines[0]["level"] == "warning" and "heroku ps:scale worker=0 web=1" in lines[0]["fix"]


async def test_a_web_dyno_in_app_token_mode_stops_at_once_saying_to_run_the_worker() -> None:
    env = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret-value-1234", "DYNO": "web.1"}
    bot = await BotProcess({**env, "PORT": str(free_port())}).start()
    assert await bot.wait(timeout=20) == 2
    [line] = bot.stderr.splitlines()
    assert line.startswith("configuration error: DYNO is web.1") and "heroku ps:scale web=0 worker=1" in line


# --- the README's promises ------------------------------------------------------------------------------------------


def _title_variants(template: Path) -> list[str]:
    """Each title a template can give, with its data as "…": one per `### ` line, both sides of an inline if."""
    variants = []
    for line in template.read_text().splitlines():
        if not line.startswith("### "):
            continue
        title = re.sub(r"\{\{.*?\}\}", "…", line.removeprefix("### ").strip())
        branch = re.fullmatch(r"(.*)\{%\s*if .*?%\}(.*?)\{%\s*else\s*%\}(.*?)\{%\s*endif\s*%\}(.*)", title)
        if branch:
            before, first, second, after = branch.groups()
            variants += [before + first + after, before + second + after]
        else:
            variants.append(title)
    return variants


def _readme_card_titles() -> set[str]:
    """The first column of the README's cards table, each " / " alternative, with its *placeholders* as "…"."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| The card | What it means |") :].split("\n\n")[0]
    cells = [row.split(" | ")[0].removeprefix("| ") for row in table.splitlines()[2:]]
    return {re.sub(r"\*[^*]+\*", "…", title.strip()) for cell in cells for title in cell.split(" / ")}


def test_the_readme_cards_table_lists_every_card_the_bot_sends() -> None:
    templates = sorted((ROOT / "templates" / "en").glob("*.md.j2"))
    titles = [title for template in templates for title in _title_variants(template)]
    assert len(titles) > len(templates)  # one at least for each (but _support), several for some
    assert sorted(set(titles) - _readme_card_titles()) == []


# named in the README without existing in the repository, on purpose: the example of adding a command, and the
# templates' place inside an installed wheel
HYPOTHETICAL = {"bot/commands/mute.py", "bot/templates"}
TOPS = ("bot", "tests", "bench")
NAMED = re.compile(r"(?<![\w/.])((?:bot|tests|bench)/[\w/]+(?:\.py|\.md)?|[\w/]+\.py)\b")


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_no_document_names_a_module_that_does_not_exist() -> None:
    missing = []
    for document in _documents():
        for name in set(NAMED.findall(document.read_text())):
            # any(glob) asks whether a file matched: the generator glob returns is always truthy
            found = (ROOT / name).exists() or any(any((ROOT / top).glob(f"**/{name}")) for top in TOPS)
            if name not in HYPOTHETICAL and not found:
                missing.append(f"{document.relative_to(ROOT)}: {name}")
    assert missing == []


def _anchors(document: Path) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", document.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_link_between_the_documents_leads_to_a_file_and_a_heading_that_exist() -> None:
    broken = []
    for document in _documents():
        text = re.sub(r"```.*?```", "", document.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.is_file() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_readme_gives_the_demo_command_and_exactly_the_command_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    demo = "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && .venv/bin/python -m bot demo"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]

    assert commands == [demo, ci]


def test_the_readme_stays_short_for_its_first_readers() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 260


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2#Redis-Password@127.0.0.1:6379/0",  # '#' not percent-encoded: the rest reads as the port
        "redis://:hunter2-Redis-Password@127.0.0.1:99999/0",
        "rediss://default:hunter2-Redis-Password@127.0.0.1:port/0",
    ],
)
def test_an_unreadable_redis_url_is_a_configuration_error_that_never_shows_its_password(url: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DINGTALK_", "BOT_", "REDIS_"))}
    env.update(DINGTALK_CLIENT_ID="id", DINGTALK_CLIENT_SECRET="secret-value-1234", REDIS_URL=url)
    done = subprocess.run([sys.executable, "-m", "bot"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("configuration error: REDIS_URL ") and "percent-encoded" in line
    assert "hunter2" not in done.stderr and "Redis-Password" not in done.stderr


async def test_a_redis_url_without_a_host_says_the_host_redis_uses() -> None:
    env = {**ENV, "DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret-value-1234"}
    bot = await BotProcess({**env, "REDIS_URL": "redis:///0"}).start()
    await bot.wait_log("bot starting")
    await bot.stop()

    assert bot.logs("bot starting")[0]["state"] == "redis localhost:6379"  # redis-py's default host, not "None"
