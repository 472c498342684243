"""Config.from_env: defaults, regions, overrides and validation; the table of variables and `--help`."""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import string
import uuid
from collections.abc import Callable, Iterator, Mapping

import pytest

from bot.config import REQUIRED, VARIABLES, Config, ConfigError, Variable

CREDENTIALS = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret"}


def test_the_international_region() -> None:
    config = Config.from_env({**CREDENTIALS, "DINGTALK_REGION": "INTL"})
    assert (config.api_base, config.oapi_base) == ("https://api.dingtalk.io", "https://oapi.dingtalk.io")


def test_base_urls_override_the_region() -> None:
    env = {
        **CREDENTIALS,
        "DINGTALK_REGION": "intl",
        "DINGTALK_API_BASE": "http://127.0.0.1:9/",
        "DINGTALK_OAPI_BASE": "http://127.0.0.1:8",
    }
    config = Config.from_env(env)
    assert (config.api_base, config.oapi_base) == ("http://127.0.0.1:9", "http://127.0.0.1:8")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"DINGTALK_CLIENT_ID": " "}, "DINGTALK_CLIENT_ID"),
        ({"DINGTALK_CLIENT_SECRET": ""}, "DINGTALK_CLIENT_SECRET"),
        ({"DINGTALK_REGION": "eu"}, "DINGTALK_REGION"),
        ({"DINGTALK_API_BASE": "api.dingtalk.com"}, "DINGTALK_API_BASE"),
        ({"BOT_LOCALE": "fr"}, "BOT_LOCALE"),
        ({"BOT_HTTP_TIMEOUT": "0"}, "BOT_HTTP_TIMEOUT"),
        ({"BOT_HTTP_TIMEOUT": "soon"}, "BOT_HTTP_TIMEOUT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_invalid_settings_name_the_variable(override: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config.from_env({**CREDENTIALS, **override})


def test_the_secret_is_not_in_any_error_message() -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({**CREDENTIALS, "DINGTALK_REGION": "nowhere"})
    assert "secret" not in str(raised.value)


class RecordingEnvironment(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.read: list[str] = []

    def __getitem__(self, name: str) -> str:
        self.read.append(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def test_the_table_lists_exactly_the_variables_the_configuration_reads() -> None:
    environment = RecordingEnvironment(dict(CREDENTIALS))
    Config.from_env(environment)

    assert sorted(set(environment.read)) == sorted(variable.name for variable in VARIABLES)
    assert len({variable.name for variable in VARIABLES}) == len(VARIABLES)


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda variable: variable.name)
def test_the_tables_default_is_the_value_used_when_the_variable_is_unset(variable: Variable) -> None:
    default = variable.default
    written = {} if default.startswith("(") else {variable.name: default}

    assert (
        default == REQUIRED
        or default.startswith("(")
        or Config.from_env({**CREDENTIALS, **written}) == (Config.from_env(CREDENTIALS))
    )
    assert variable.meaning and variable.meaning == variable.meaning.strip()


def test_each_setting_is_read_by_exactly_one_row_of_the_table() -> None:
    settings = sorted(field.name for field in dataclasses.fields(Config))
    assert sorted(variable.field for variable in VARIABLES) == settings


USER_MODE = {**CREDENTIALS, "BOT_CALENDAR_TOKEN": "user", "BOT_PUBLIC_URL": "https://bot.example.com"}


def test_every_configuration_problem_is_reported_in_one_run() -> None:
    env = {
        "DINGTALK_CLIENT_SECRET": "secret",
        "BOT_CALENDAR_TOKEN": "user",
        "BOT_PUBLIC_URL": "http://bot.example.com",
        "BOT_SECRET_KEY": "short",
        "DINGTALK_REGION": "mars",
        "BOT_HTTP_TIMEOUT": "soon",
        "PORT": "99999",
        "DINGTALK_APP_TYPE": "suite",
    }
    with pytest.raises(ConfigError) as raised:
        Config.from_env(env)
    named = [problem.split()[0] for problem in raised.value.problems]
    assert named == [  # in the table's order: the order of `--help`, app.json and the README
        "DINGTALK_CLIENT_ID",
        "DINGTALK_APP_TYPE",
        "DINGTALK_REGION",
        "BOT_HTTP_TIMEOUT",
        "BOT_PUBLIC_URL",
        "BOT_SECRET_KEY",
        "PORT",
    ]


@pytest.mark.parametrize("key", ["a" * 32, "ab" * 16, "a" * 31 + "b", "password" * 4, "x" * 64, "0123" * 8])
def test_a_secret_key_with_too_little_variety_is_refused_and_the_error_says_how_to_make_one(key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({**USER_MODE, "BOT_SECRET_KEY": key})
    [problem] = raised.value.problems
    assert problem.startswith("BOT_SECRET_KEY ") and "secrets.token_urlsafe(48)" in problem and key not in problem


@pytest.mark.parametrize(
    "make", [lambda: secrets.token_urlsafe(48), lambda: secrets.token_hex(16), lambda: secrets.token_hex(32)]
)
def test_a_random_secret_key_is_accepted(make: Callable[[], str]) -> None:
    for _ in range(200):  # random keys of every usual kind, not one lucky draw
        assert Config.from_env({**USER_MODE, "BOT_SECRET_KEY": make()}).user_tokens


@pytest.mark.parametrize(("written", "isv"), [("ISV", True), (" Isv ", True), ("isv", True), ("Internal", False)])
def test_the_app_type_is_read_case_insensitively(written: str, isv: bool) -> None:
    assert Config.from_env({**CREDENTIALS, "DINGTALK_APP_TYPE": written}).is_isv is isv


@pytest.mark.parametrize(
    "make",
    [
        lambda: str(uuid.uuid4()),
        lambda: base64.b64encode(os.urandom(24)).decode(),  # openssl rand -base64 24
        lambda: "".join(secrets.choice(string.digits) for _ in range(40)),
    ],
)
def test_other_usual_random_keys_are_accepted(make: Callable[[], str]) -> None:
    for _ in range(500):
        assert Config.from_env({**USER_MODE, "BOT_SECRET_KEY": make()}).user_tokens


def test_a_state_folder_under_home_is_the_admins_home_not_a_folder_named_tilde() -> None:
    config = Config.from_env({**CREDENTIALS, "BOT_STATE_DIR": "~/calendar-bot"})

    assert config.state_dir == os.path.join(os.path.expanduser("~"), "calendar-bot") != "~/calendar-bot"


def test_the_app_type_is_internal_or_isv() -> None:
    credentials = {"DINGTALK_CLIENT_ID": "suite", "DINGTALK_CLIENT_SECRET": "secret"}
    assert not Config.from_env(credentials).is_isv
    assert Config.from_env({**credentials, "DINGTALK_APP_TYPE": " ISV "}).is_isv
    with pytest.raises(ConfigError, match="DINGTALK_APP_TYPE"):
        Config.from_env({**credentials, "DINGTALK_APP_TYPE": "personal"})


def test_the_flood_settings_are_validated() -> None:
    credentials = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret"}
    for name in ("BOT_INBOX_CAPACITY", "BOT_MAX_IN_FLIGHT_PER_SENDER", "BOT_USER_RATE_WINDOW", "BOT_DEDUPE_SECONDS"):
        with pytest.raises(ConfigError, match=name):
            Config.from_env({**credentials, name: "0"})


ISV = {**CREDENTIALS, "DINGTALK_APP_TYPE": "isv"}


@pytest.mark.parametrize(
    ("written", "default", "pairs"),
    [
        ("tpl.schema", "tpl.schema", {}),
        ("dingabc=tplA, dingxyz = tplB,tplDefault", "tplDefault", {"dingabc": "tplA", "dingxyz": "tplB"}),
        ("dingabc=tplA，dingxyz=tplB", "", {"dingabc": "tplA", "dingxyz": "tplB"}),  # a full-width comma too
    ],
)
def test_card_template_ids_per_organization_with_an_optional_default(
    written: str, default: str, pairs: dict[str, str]
) -> None:
    templates = Config.from_env({**ISV, "BOT_CARD_TEMPLATE_ID": written}).card_templates
    assert templates and templates.default == default and dict(templates.by_organization) == pairs
    for corp_id, template_id in pairs.items():
        assert templates.for_organization(corp_id) == template_id
    assert templates.for_organization("dingother") == default


def test_one_card_template_id_serves_an_internal_app_and_unset_means_none() -> None:
    assert Config.from_env({**CREDENTIALS, "BOT_CARD_TEMPLATE_ID": "t.schema"}).card_templates.for_organization("x")
    assert not Config.from_env(CREDENTIALS).card_templates


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("dingabc=", "needs both sides"),
        ("=tplA", "needs both sides"),
        ("dingabc=tplA=tplB", "neither a template id nor"),
        ("dingabc=tplA,,tplB", "neither a template id nor"),
        ("ding abc=tplA", "neither a template id nor"),
        ("dingabc=tplA,dingabc=tplB", "organization dingabc is given twice"),
        ("dingabc=tplA,dingabc=tplA", "organization dingabc is given twice"),
        ("tplA,tplB", "at most one id without corpId="),
    ],
)
def test_malformed_or_duplicate_card_template_ids_are_a_configuration_error(written: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="BOT_CARD_TEMPLATE_ID") as raised:
        Config.from_env({**ISV, "BOT_CARD_TEMPLATE_ID": written})
    assert problem in str(raised.value)


def test_card_template_pairs_on_an_internal_app_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="pairs are for ISV apps") as raised:
        Config.from_env({**CREDENTIALS, "BOT_CARD_TEMPLATE_ID": "dingabc=tplA,tplDefault"})
    assert raised.value.problems == (raised.value.problems[0],)  # one problem, naming the variable
