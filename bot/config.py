"""Configuration: every environment variable, its default and its validation, read once at start-up."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

REGIONS = {
    # Mainland DingTalk is the default: the Stream gateway is documented only there, and the SDK uses it.
    "cn": ("https://api.dingtalk.com", "https://oapi.dingtalk.com"),
    "intl": ("https://api.dingtalk.io", "https://oapi.dingtalk.io"),
}
LOCALES = ("zh_CN", "en")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Config:
    client_id: str
    client_secret: str
    api_base: str
    oapi_base: str
    locale: str = "zh_CN"
    http_timeout: float = 10.0
    log_level: str = "INFO"
    max_in_flight: int = 256
    command_timeout: float = 20.0
    api_qps: float = 20.0
    user_rate: int = 10
    heartbeat_seconds: float = 60.0
    ping_seconds: float = 20.0
    redis_url: str = ""
    redis_tls_verify: bool = False
    inbox_capacity: int = 10_000
    max_in_flight_per_sender: int = 1
    user_rate_window: float = 60.0
    dedupe_seconds: float = 600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        client_id = _required(env, "DINGTALK_CLIENT_ID")
        client_secret = _required(env, "DINGTALK_CLIENT_SECRET")
        region = env.get("DINGTALK_REGION", "cn").strip().lower() or "cn"
        if region not in REGIONS:
            raise ConfigError(f"DINGTALK_REGION must be one of {', '.join(REGIONS)}, not {region!r}")
        default_api, default_oapi = REGIONS[region]
        locale = env.get("BOT_LOCALE", "zh_CN").strip() or "zh_CN"
        if locale not in LOCALES:
            raise ConfigError(f"BOT_LOCALE must be one of {', '.join(LOCALES)}, not {locale!r}")
        log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")
        return cls(
            client_id=client_id,
            client_secret=client_secret,
            api_base=_base_url(env, "DINGTALK_API_BASE", default_api),
            oapi_base=_base_url(env, "DINGTALK_OAPI_BASE", default_oapi),
            locale=locale,
            http_timeout=_positive_float(env, "BOT_HTTP_TIMEOUT", 10.0),
            log_level=log_level,
            max_in_flight=_positive_int(env, "BOT_MAX_IN_FLIGHT", 256),
            command_timeout=_positive_float(env, "BOT_COMMAND_TIMEOUT", 20.0),
            api_qps=_positive_float(env, "BOT_API_QPS", 20.0),
            user_rate=_positive_int(env, "BOT_USER_RATE", 10),
            heartbeat_seconds=_positive_float(env, "BOT_HEARTBEAT_SECONDS", 60.0),
            ping_seconds=_positive_float(env, "BOT_STREAM_PING_SECONDS", 20.0),
            redis_url=_redis_url(env),
            redis_tls_verify=_flag(env, "REDIS_TLS_VERIFY"),
            inbox_capacity=_positive_int(env, "BOT_INBOX_CAPACITY", 10_000),
            max_in_flight_per_sender=_positive_int(env, "BOT_MAX_IN_FLIGHT_PER_SENDER", 1),
            user_rate_window=_positive_float(env, "BOT_USER_RATE_WINDOW", 60.0),
            dedupe_seconds=_positive_float(env, "BOT_DEDUPE_SECONDS", 600.0),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: give the DingTalk app's credentials (see README, 'Configuration')")
    return value


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL such as {default}, not {value!r}")
    return value.rstrip("/")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _positive_float(env, name, default)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, not {env[name].strip()!r}")
    return int(value)


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be greater than 0, not {raw!r}")
    return value


def _redis_url(env: Mapping[str, str]) -> str:
    value = env.get("REDIS_URL", "").strip()
    if value and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")  # the URL may hold a password
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    return raw in ("1", "true", "yes")
