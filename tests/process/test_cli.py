"""The command line as an admin meets it: --help from the table, the usage, every configuration problem at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.config import VARIABLES
from tests.botprocess import ROOT

CREDENTIALS = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret"}
USER_MODE = {**CREDENTIALS, "BOT_CALENDAR_TOKEN": "user", "BOT_PUBLIC_URL": "https://bot.example.com"}


def run_bot(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_variable_with_its_default_and_meaning_and_the_demo(flag: str) -> None:
    shown = run_bot(flag)

    assert shown.returncode == 0 and shown.stderr == ""
    text = " ".join(shown.stdout.split())  # meanings are wrapped to the terminal
    for variable in VARIABLES:
        assert f"{variable.name} = {variable.default} {variable.meaning}" in text
    assert "demo --interactive" in text and "usage: python -m bot" in text
    assert "HTTPS_PROXY, HTTP_PROXY and NO_PROXY" in text


@pytest.mark.parametrize("arguments", [["--verbose"], ["serve"], ["demo", "--fast"]])
def test_unknown_arguments_exit_2_with_the_usage(arguments: list[str]) -> None:
    refused = run_bot(*arguments)

    assert refused.returncode == 2 and refused.stdout == ""
    assert "usage: python -m bot" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("arguments", "stream"), [(["demo", "--help"], "stdout"), (["demo", "--isv", "--interactive"], "stderr")]
)
def test_the_demos_usage_names_the_demo_command_once(arguments: list[str], stream: str) -> None:
    shown = run_bot(*arguments)

    first = getattr(shown, stream).splitlines()[0]
    assert first == "usage: python -m bot demo [-h] [--interactive | --isv | --user-tokens] [--cards]"


def test_the_process_prints_every_configuration_problem_one_line_each_and_exits_2() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DINGTALK_", "BOT_"))}
    env.update(USER_MODE, BOT_PUBLIC_URL="", BOT_SECRET_KEY="a" * 32, DINGTALK_REGION="mars")
    done = subprocess.run([sys.executable, "-m", "bot"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert [line.split()[2] for line in lines] == ["DINGTALK_REGION", "BOT_PUBLIC_URL", "BOT_SECRET_KEY"]
    assert all(line.startswith("configuration error: ") for line in lines) and "a" * 32 not in done.stderr


@pytest.mark.parametrize(
    "key", ["password" * 4 + "1", "1" + "password" * 4, "changeme-" * 4, "abcdefgh" * 4 + "x!", "a" * 100 + "bcdefghij"]
)
def test_a_repeated_pattern_with_a_character_added_is_refused_by_the_process(key: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DINGTALK_", "BOT_"))}
    env.update(USER_MODE, BOT_SECRET_KEY=key)
    done = subprocess.run([sys.executable, "-m", "bot"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("configuration error: BOT_SECRET_KEY ") and "token_urlsafe" in line and key not in line
