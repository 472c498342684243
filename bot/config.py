"""Configuration: every environment variable, its default and its validation, read once at start-up."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

REGIONS = {
    # Mainland DingTalk is the default: the Stream gateway is documented only there, and the SDK uses it.
    "cn": ("https://api.dingtalk.com", "https://oapi.dingtalk.com"),
    "intl": ("https://api.dingtalk.io", "https://oapi.dingtalk.io"),
}
LOCALES = ("zh_CN", "en")
CALENDAR_TOKENS = ("app", "user")  # BOT_CALENDAR_TOKEN: calendar calls with the app's token or each user's own
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_BITS = 80.0  # estimated from its characters: 32 random hex digits give 95-125, 32 × "a" none
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
USER_MODE_ONLY = "(required with BOT_CALENDAR_TOKEN=user)"
FAULTS = ("", "stream-loop-ends", "heartbeat-ends")  # BOT_FAULT: make a vital task end, to test the watchdog
APP_TYPES = ("internal", "isv")  # DINGTALK_APP_TYPE: an internal app, or a third-party enterprise app (suite)


T = TypeVar("T")
REQUIRED = "(required)"
UNSET = "(unset)"


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable the bot reads: its default as an admin would write it, and what it means."""

    name: str
    default: str  # the value as written in the environment, or in parentheses what happens without it
    meaning: str


# Every variable the bot reads, in the order the README, `python -m bot --help` and app.json present them.
# A new setting gets a row here and a line in Config.from_env; tests check that the two, and app.json, agree.
VARIABLES = (
    Variable("DINGTALK_CLIENT_ID", REQUIRED, "the app's Client ID / AppKey; also the robot code"),
    Variable("DINGTALK_CLIENT_SECRET", REQUIRED, "the app's Client Secret / AppSecret; never logged"),
    Variable(
        "DINGTALK_APP_TYPE",
        "internal",
        "internal: an organization's own app (its AppKey/AppSecret); isv: a third-party enterprise app serving every "
        "organization that authorized it (DINGTALK_CLIENT_ID/SECRET are then the SuiteKey/SuiteSecret)",
    ),
    Variable(
        "DINGTALK_REGION",
        "cn",
        "cn: mainland DingTalk (api.dingtalk.com, oapi.dingtalk.com); intl: international DingTalk "
        "(api.dingtalk.io, oapi.dingtalk.io)",
    ),
    Variable(
        "DINGTALK_API_BASE",
        "(from the region)",
        "new-style OpenAPI host, also the Stream gateway host, e.g. https://api.dingtalk.com; overrides the region",
    ),
    Variable(
        "DINGTALK_OAPI_BASE",
        "(from the region)",
        "old-style API host (topapi), e.g. https://oapi.dingtalk.com; overrides the region",
    ),
    Variable(
        "BOT_LOCALE",
        "zh_CN",
        "card language (zh_CN or en) for a message the bot cannot read from someone whose language it has not "
        "seen yet; otherwise cards follow the command's language, or the sender's last one",
    ),
    Variable(
        "BOT_HTTP_TIMEOUT",
        "10",
        "seconds one DingTalk HTTP exchange may take in all (connect, send, read the whole answer)",
    ),
    Variable("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Variable("BOT_MAX_IN_FLIGHT", "256", "messages handled at once; more wait in arrival order (ACKs never wait)"),
    Variable(
        "BOT_COMMAND_TIMEOUT",
        "20",
        "seconds a command may keep retrying DingTalk before the 'DingTalk is busy' card; the reply has a budget "
        "of its own",
    ),
    Variable("BOT_API_QPS", "20", "calls per second per DingTalk API (DingTalk counts each API separately)"),
    Variable(
        "BOT_USER_RATE",
        "10",
        "commands per sender per minute, help included; the next gets a 'slow down' card, later ones are dropped",
    ),
    Variable(
        "BOT_USER_RATE_WINDOW",
        "60",
        "seconds of the per-sender sliding window of BOT_USER_RATE; also how often one sender may be told the bot "
        "is busy",
    ),
    Variable(
        "BOT_MAX_IN_FLIGHT_PER_SENDER",
        "1",
        "messages of one sender handled at once; the next starts when one is done, behind other senders' waiting "
        "messages (round robin), in the order sent",
    ),
    Variable(
        "BOT_INBOX_CAPACITY",
        "10000",
        "messages that may wait for a worker (each 1,024 characters of text count one more); beyond it, or beyond "
        "100 waiting from one sender, a message gets a short 'busy, try again in a minute' card",
    ),
    Variable(
        "BOT_DEDUPE_SECONDS",
        "600",
        "how long a handled msgId is remembered so a repeat is dropped (at least this, at most twice it, at most "
        "200,000 ids); with Redis, the lifetime of the shared claim",
    ),
    Variable("BOT_HEARTBEAT_SECONDS", "60", "how often the heartbeat log line with counters is written"),
    Variable(
        "BOT_STREAM_PING_SECONDS",
        "20",
        "WebSocket ping interval; a socket with no pong for as long again is replaced",
    ),
    Variable(
        "BOT_STREAM_RETRY_SECONDS",
        "1",
        "pause before the first reconnect of the Stream connection; it doubles after each failed or short-"
        "lived (under a minute) connection, up to 60 s, with jitter",
    ),
    Variable(
        "BOT_RETRY_PAUSE_SCALE",
        "1",
        "multiplies every pause between retries of a DingTalk call (0.125-4 s, at least 1 s after a "
        "throttle); tests use 0.01, keep 1 in production",
    ),
    Variable(
        "BOT_FAULT",
        UNSET,
        "for tests of the watchdog only: stream-loop-ends or heartbeat-ends makes that task end; never set it"
        " in production",
    ),
    Variable(
        "BOT_STATE_DIR",
        "./state",
        "folder for the bot's embedded state (SQLite), used when REDIS_URL is unset; on a platform whose disk does "
        "not outlive the process (a Heroku dyno), use REDIS_URL for anything that must survive a restart",
    ),
    Variable(
        "BOT_ADMINS",
        "(none)",
        "comma-separated staff ids of the bot's admins: they may use stats and audit; anyone else is refused; in an "
        "ISV app each is written corpId:staffId (a staff id is unique only within its organization)",
    ),
    Variable(
        "BOT_CONFIRM_SECONDS",
        "600",
        "how long the Confirm button of a bulk unsubscribe preview works; tests shorten it",
    ),
    Variable(
        "BOT_CALENDAR_TOKEN",
        "app",
        "app: calendar calls use the app's token (it needs the organization-wide calendar permission); user: each "
        "user connects their DingTalk account once (OAuth) and calendar calls use their own token",
    ),
    Variable(
        "DINGTALK_OAUTH_CLIENT_ID",
        "(DINGTALK_CLIENT_ID)",
        "with BOT_CALENDAR_TOKEN=user: the OAuth client (a third-party personal app's AppId); by default the robot "
        "app's own",
    ),
    Variable(
        "DINGTALK_OAUTH_CLIENT_SECRET",
        "(DINGTALK_CLIENT_SECRET)",
        "with BOT_CALENDAR_TOKEN=user: the OAuth client's secret (AppSecret); never logged",
    ),
    Variable(
        "DINGTALK_LOGIN_BASE",
        "https://login.dingtalk.com",
        "with BOT_CALENDAR_TOKEN=user: where users are sent to consent (DingTalk's OAuth authorize page)",
    ),
    Variable(
        "BOT_PUBLIC_URL",
        USER_MODE_ONLY,
        "with BOT_CALENDAR_TOKEN=user: the bot's public https address; DingTalk redirects users to "
        "{BOT_PUBLIC_URL}/oauth/callback, which must be registered in the developer console",
    ),
    Variable(
        "BOT_SECRET_KEY",
        USER_MODE_ONLY,
        "with BOT_CALENDAR_TOKEN=user: at least 32 random characters, not a pattern (e.g. python -c 'import "
        "secrets; print(secrets.token_urlsafe(48))'); signs the connect links and encrypts users' refresh tokens at "
        "rest (changing it disconnects every user); never logged",
    ),
    Variable(
        "PORT",
        "(5000; Heroku sets it)",
        "with BOT_CALENDAR_TOKEN=user: the HTTP port of the OAuth redirect (Heroku sets it for a web process)",
    ),
    Variable(
        "BOT_CARD_TEMPLATE_ID",
        UNSET,
        "the id (ending in .schema) of the card template imported from templates/cards/calendar-card.json and "
        "published in the card platform (needs Card.Instance.Write): cards with buttons update in place and "
        "presses arrive over Stream; unset: ActionCards with links, as before",
    ),
    Variable(
        "REDIS_URL",
        UNSET,
        "redis://... or rediss://... (TLS): share state between dynos; unset keeps state in the process (one dyno)",
    ),
    Variable(
        "BOT_JOURNAL_CLAIM_SECONDS",
        "30",
        "with REDIS_URL: how long an unfinished command of a process that is gone (killed, crashed, or restarted: "
        "its successor included) waits before a live process takes it over and finishes it",
    ),
    Variable(
        "DYNO",
        "(set by Heroku)",
        "this process's name, e.g. worker.1: with REDIS_URL it begins the journal's consumer name "
        "(worker.1:<pid>:<random>, one per process); without REDIS_URL, it means a journal that does not survive "
        "the dyno (a warning at start)",
    ),
    Variable(
        "REDIS_TLS_VERIFY",
        "false",
        "verify the certificate of a rediss:// server (off because Heroku's Redis certificate is self-signed)",
    ),
)


class ConfigError(ValueError):
    """Settings are missing or invalid: one problem per variable, each naming it."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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
    stream_retry_seconds: float = 1.0
    fault: str = ""
    redis_url: str = ""
    redis_tls_verify: bool = False
    retry_pause_scale: float = 1.0
    state_dir: str = "./state"
    inbox_capacity: int = 10_000
    max_in_flight_per_sender: int = 1
    user_rate_window: float = 60.0
    dedupe_seconds: float = 600.0
    region: str = "cn"
    admins: frozenset[str] = frozenset()
    confirm_seconds: float = 600.0
    calendar_token: str = "app"  # noqa: S105 - a mode, not a secret
    oauth_client_id: str = ""
    oauth_client_secret: str = ""
    login_base: str = "https://login.dingtalk.com"
    public_url: str = ""
    secret_key: str = ""
    port: int = 5000
    app_type: str = "internal"
    journal_claim_seconds: float = 30.0
    dyno: str = ""
    card_template_id: str = ""  # set: interactive cards (bot/cards/interactive.py); unset: ActionCards as before

    @property
    def user_tokens(self) -> bool:
        """Calendar calls use each user's own token (BOT_CALENDAR_TOKEN=user)."""
        return self.calendar_token == "user"  # noqa: S105 - a mode, not a secret

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """The configuration, or ConfigError listing every problem found (not only the first)."""
        problems: list[str] = []

        def read(parse: Callable[..., T], *arguments: Any, fallback: T) -> T:
            try:
                return parse(*arguments)
            except ConfigError as error:
                problems.extend(error.problems)
                return fallback

        client_id = read(_required, env, "DINGTALK_CLIENT_ID", fallback="")
        client_secret = read(_required, env, "DINGTALK_CLIENT_SECRET", fallback="")
        region = read(_choice, env, "DINGTALK_REGION", REGIONS, "cn", str.lower, fallback="cn")
        default_api, default_oapi = REGIONS[region]
        log_levels = ("DEBUG", "INFO", "WARNING", "ERROR")
        config = cls(
            client_id=client_id,
            client_secret=client_secret,
            api_base=read(_base_url, env, "DINGTALK_API_BASE", default_api, fallback=default_api),
            oapi_base=read(_base_url, env, "DINGTALK_OAPI_BASE", default_oapi, fallback=default_oapi),
            locale=read(_choice, env, "BOT_LOCALE", LOCALES, "zh_CN", str, fallback="zh_CN"),
            http_timeout=read(_positive_float, env, "BOT_HTTP_TIMEOUT", 10.0, fallback=10.0),
            log_level=read(_choice, env, "LOG_LEVEL", log_levels, "INFO", str.upper, fallback="INFO"),
            max_in_flight=read(_positive_int, env, "BOT_MAX_IN_FLIGHT", 256, fallback=256),
            command_timeout=read(_positive_float, env, "BOT_COMMAND_TIMEOUT", 20.0, fallback=20.0),
            api_qps=read(_positive_float, env, "BOT_API_QPS", 20.0, fallback=20.0),
            user_rate=read(_positive_int, env, "BOT_USER_RATE", 10, fallback=10),
            heartbeat_seconds=read(_positive_float, env, "BOT_HEARTBEAT_SECONDS", 60.0, fallback=60.0),
            ping_seconds=read(_positive_float, env, "BOT_STREAM_PING_SECONDS", 20.0, fallback=20.0),
            stream_retry_seconds=read(_positive_float, env, "BOT_STREAM_RETRY_SECONDS", 1.0, fallback=1.0),
            fault=read(_fault, env, fallback=""),
            redis_url=read(_redis_url, env, fallback=""),
            redis_tls_verify=read(_flag, env, "REDIS_TLS_VERIFY", fallback=False),
            retry_pause_scale=read(_positive_float, env, "BOT_RETRY_PAUSE_SCALE", 1.0, fallback=1.0),
            # A quoted value or a dyno's config keeps "~" as written: expand it as the admin meant.
            state_dir=os.path.expanduser(env.get("BOT_STATE_DIR", "").strip() or "./state"),
            inbox_capacity=read(_positive_int, env, "BOT_INBOX_CAPACITY", 10_000, fallback=10_000),
            max_in_flight_per_sender=read(_positive_int, env, "BOT_MAX_IN_FLIGHT_PER_SENDER", 1, fallback=1),
            user_rate_window=read(_positive_float, env, "BOT_USER_RATE_WINDOW", 60.0, fallback=60.0),
            dedupe_seconds=read(_positive_float, env, "BOT_DEDUPE_SECONDS", 600.0, fallback=600.0),
            region=region,
            admins=_staff_ids(env, "BOT_ADMINS"),
            confirm_seconds=read(_positive_float, env, "BOT_CONFIRM_SECONDS", 600.0, fallback=600.0),
            **_user_token_settings(env, client_id, client_secret, problems),
            app_type=read(_choice, env, "DINGTALK_APP_TYPE", APP_TYPES, "internal", str.lower, fallback="internal"),
            journal_claim_seconds=read(_positive_float, env, "BOT_JOURNAL_CLAIM_SECONDS", 30.0, fallback=30.0),
            dyno=env.get("DYNO", "").strip(),
            card_template_id=env.get("BOT_CARD_TEMPLATE_ID", "").strip(),
        )
        if config.dyno.startswith("web.") and not config.user_tokens:  # Heroku would kill it: $PORT never served
            problems.append(
                f"DYNO is {config.dyno}: the web process type serves the OAuth redirect of BOT_CALENDAR_TOKEN=user; "
                "with app tokens run the worker instead (heroku ps:scale web=0 worker=1)"
            )
        if problems:
            raise ConfigError(*problems)
        return config

    @property
    def is_isv(self) -> bool:
        return self.app_type == "isv"


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
    try:
        urlsplit(value).port  # noqa: B018 - what redis-py reads; its error would quote the "port" (part of a password)
    except ValueError:
        raise ConfigError(
            "REDIS_URL has no readable host and port: a password holding #, /, ? or @ must be percent-encoded"
        ) from None
    return value


def _fault(env: Mapping[str, str]) -> str:
    value = env.get("BOT_FAULT", "").strip()
    if value not in FAULTS:
        raise ConfigError(f"BOT_FAULT is for tests of the watchdog: one of {', '.join(FAULTS[1:])}, not {value!r}")
    return value


def _choice(
    env: Mapping[str, str], name: str, choices: Iterable[str], default: str, normal: Callable[[str], str]
) -> str:
    """One of `choices`, read through `normal` (case-insensitively where that is str.lower or str.upper)."""
    value = normal(env.get(name, "").strip()) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    return raw in ("1", "true", "yes")


def _staff_ids(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(part.strip() for part in env.get(name, "").replace("，", ",").split(",") if part.strip())


def _user_token_settings(
    env: Mapping[str, str], client_id: str, client_secret: str, problems: list[str]
) -> dict[str, Any]:
    """BOT_CALENDAR_TOKEN and what user-token mode needs; the mode refuses to start without its public address and
    a real secret key. Problems are added to `problems`."""
    mode = env.get("BOT_CALENDAR_TOKEN", "").strip().lower() or "app"
    if mode not in CALENDAR_TOKENS:
        problems.append(f"BOT_CALENDAR_TOKEN must be one of {', '.join(CALENDAR_TOKENS)}, not {mode!r}")
        mode = "app"
    try:
        login_base = _base_url(env, "DINGTALK_LOGIN_BASE", "https://login.dingtalk.com")
    except ConfigError as error:
        problems.extend(error.problems)
        login_base = "https://login.dingtalk.com"
    try:
        port = _port(env)
    except ConfigError as error:
        problems.extend(error.problems)
        port = 5000
    public_url = env.get("BOT_PUBLIC_URL", "").strip().rstrip("/")
    secret_key = env.get("BOT_SECRET_KEY", "").strip()
    settings: dict[str, Any] = {
        "calendar_token": mode,
        "oauth_client_id": env.get("DINGTALK_OAUTH_CLIENT_ID", "").strip() or client_id,
        "oauth_client_secret": env.get("DINGTALK_OAUTH_CLIENT_SECRET", "").strip() or client_secret,
        "login_base": login_base,
        "public_url": public_url,
        "secret_key": secret_key,
        "port": port,
    }
    if mode != "user":
        return settings
    parts = urlsplit(public_url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.netloc or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        problems.append(
            "BOT_PUBLIC_URL must be the bot's public https address (e.g. https://my-bot.herokuapp.com) with "
            f"BOT_CALENDAR_TOKEN=user, not {public_url!r}"
        )
    weakness = key_weakness(secret_key)
    if weakness:  # its value is never echoed
        problems.append(
            f"BOT_SECRET_KEY {weakness} with BOT_CALENDAR_TOKEN=user: make one with "
            f"`{MAKE_A_KEY}` and keep it (changing it disconnects every user)"
        )
    return settings


def key_weakness(key: str) -> str:
    """Why `key` is no real secret key ("" when it is one): too short, a repeated pattern (or mostly one), or too
    little variety (its characters' Shannon entropy, times its length, under MIN_SECRET_KEY_BITS)."""
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"must be at least {MIN_SECRET_KEY_LENGTH} characters"
    if any(key == key[:size] * (len(key) // size) for size in range(1, len(key) // 2 + 1) if len(key) % size == 0):
        return "is one short pattern repeated, not a key"
    # a pattern with a character or two added (password × 4 + "1"): most of its three-character pieces recur
    trigrams = len(key) - 2
    if len({key[start : start + 3] for start in range(trigrams)}) * 2 < trigrams:
        return "is mostly one short pattern repeated, not a key"
    counts = Counter(key).values()
    bits = -sum(count * math.log2(count / len(key)) for count in counts)
    if bits < MIN_SECRET_KEY_BITS:
        return f"has too little variety to be a key ({len(counts)} different characters in {len(key)})"
    return ""


def _port(env: Mapping[str, str]) -> int:
    raw = env.get("PORT", "").strip() or "5000"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT must be a TCP port number (1-65535), not {raw!r}")
    return int(raw)
