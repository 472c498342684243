"""Config.from_env: defaults, regions, overrides and validation."""

from __future__ import annotations

import pytest

from bot.config import Config, ConfigError

CREDENTIALS = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret"}


def test_defaults_are_mainland_dingtalk_in_chinese() -> None:
    config = Config.from_env(CREDENTIALS)
    assert (config.api_base, config.oapi_base) == ("https://api.dingtalk.com", "https://oapi.dingtalk.com")
    assert config.locale == "zh_CN" and config.http_timeout == 10.0 and config.log_level == "INFO"


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
