"""Configuration: one table of environment variables (default, meaning, parser) read once at start-up."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
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
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


REQUIRED = "(required)"
UNSET = "(unset)"


@dataclass(frozen=True, slots=True)
class CardTemplates:
    """BOT_CARD_TEMPLATE_ID read: an ISV app's template id per organization (corpId), and the id for any other."""

    default: str = ""
    by_organization: tuple[tuple[str, str], ...] = ()  # (corpId, templateId), each corpId once

    def __bool__(self) -> bool:
        return bool(self.default or self.by_organization)

    def for_organization(self, corp_id: str) -> str:
        """The template id for cards in this organization; "" when it has none (today's cards there)."""
        return dict(self.by_organization).get(corp_id, self.default)


class ConfigError(ValueError):
    """Settings are missing or invalid: one problem per variable, each naming it."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Written:
    """A variable as the environment has it, handed to its row's parser."""

    name: str
    value: str  # stripped; "" when unset
    default: str  # what an unset variable stands for
    read: Mapping[str, Any]  # the settings of the rows above it, by Config field

    @property
    def text(self) -> str:
        return self.value or self.default


Parser = Callable[[Written], Any]


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable the bot reads: its default as an admin would write it, what it means, the Config
    field it sets and the parser that reads it (raising ConfigError)."""

    name: str
    default: str  # the value as written in the environment, or in parentheses what happens without it
    meaning: str
    field: str
    parse: Parser
    unset: str | Callable[[Mapping[str, Any]], str] = ""  # what stands for an unset variable whose default is prose

    def read(self, env: Mapping[str, str], read: Mapping[str, Any]) -> Any:
        """Its setting from `env`; ConfigError when it is invalid."""
        return self.parse(Written(self.name, env.get(self.name, "").strip(), self._default(read), read))

    def fallback(self, read: Mapping[str, Any]) -> Any:
        """What the rows below it see when it is invalid: its setting when unset, or ""."""
        try:
            return self.parse(Written(self.name, "", self._default(read), read))
        except ConfigError:
            return ""

    def _default(self, read: Mapping[str, Any]) -> str:
        if not self.default.startswith("("):
            return self.default
        return self.unset if isinstance(self.unset, str) else self.unset(read)


def _text(written: Written) -> str:
    return written.text


def _required(written: Written) -> str:
    if not written.value:
        raise ConfigError(
            f"{written.name} is not set: give the DingTalk app's credentials (see docs/admin.md, 'Configuration')"
        )
    return written.value


def _base_url(written: Written) -> str:
    value = written.text
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{written.name} must be an http(s) URL such as {written.default}, not {value!r}")
    return value.rstrip("/")


def _positive_int(written: Written) -> int:
    value = _positive_float(written)
    if value != int(value):
        raise ConfigError(f"{written.name} must be a whole number, not {written.value!r}")
    return int(value)


def _positive_float(written: Written) -> float:
    raw = written.text
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{written.name} must be a number, not {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{written.name} must be greater than 0, not {raw!r}")
    return value


def _choice(choices: Iterable[str], normal: Callable[[str], str]) -> Parser:
    """One of `choices`, read through `normal` (case-insensitively where that is str.lower or str.upper)."""

    def choice(written: Written) -> str:
        value = normal(written.value) or written.default
        if value not in choices:
            raise ConfigError(f"{written.name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    return choice


def _flag(written: Written) -> bool:
    raw = written.value.lower()
    if raw not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ConfigError(f"{written.name} must be true or false, not {raw!r}")
    return raw in ("1", "true", "yes")


def _folder(written: Written) -> str:
    return os.path.expanduser(written.text)  # a quoted value or a dyno's config keeps "~" as written: expand it


def _staff_ids(written: Written) -> frozenset[str]:
    return frozenset(part.strip() for part in written.value.replace("，", ",").split(",") if part.strip())


def _card_templates(written: Written) -> CardTemplates:
    """One id, or (ISV apps) corpId=templateId pairs with at most one bare id as every other organization's."""
    if not written.value:
        return CardTemplates()
    defaults: list[str] = []
    pairs: dict[str, str] = {}
    for part in (part.strip() for part in written.value.replace("，", ",").split(",")):
        corp_id, equals, template_id = (side.strip() for side in part.partition("="))
        if not part or "=" in template_id or any(char.isspace() for char in corp_id + template_id):
            raise ConfigError(f"{written.name}: {part!r} is neither a template id nor corpId=templateId")
        if not equals:
            defaults.append(corp_id)
        elif not corp_id or not template_id:
            raise ConfigError(f"{written.name}: {part!r} needs both sides: corpId=templateId")
        elif corp_id in pairs:
            raise ConfigError(f"{written.name}: organization {corp_id} is given twice")
        else:
            pairs[corp_id] = template_id
    if len(defaults) > 1:
        raise ConfigError(f"{written.name}: at most one id without corpId= (the default), not {len(defaults)}")
    if pairs and written.read.get("app_type") != "isv":
        raise ConfigError(
            f"{written.name}: corpId=templateId pairs are for ISV apps (DINGTALK_APP_TYPE=isv); an internal app "
            "serves its own organization: give the template id alone"
        )
    return CardTemplates(defaults[0] if defaults else "", tuple(pairs.items()))


def _fault(written: Written) -> str:
    if written.value not in FAULTS:
        raise ConfigError(
            f"BOT_FAULT is for tests of the watchdog: one of {', '.join(FAULTS[1:])}, not {written.value!r}"
        )
    return written.value


def _redis_url(written: Written) -> str:
    value = written.value
    if value and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")  # the URL may hold a password
    try:
        urlsplit(value).port  # noqa: B018 - what redis-py reads; its error would quote the "port" (part of a password)
    except ValueError:
        raise ConfigError(
            "REDIS_URL has no readable host and port: a password holding #, /, ? or @ must be percent-encoded"
        ) from None
    return value


def _port(written: Written) -> int:
    raw = written.text
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT must be a TCP port number (1-65535), not {raw!r}")
    return int(raw)


def _user_mode(written: Written) -> bool:
    return bool(written.read.get("calendar_token") == "user")


def _public_url(written: Written) -> str:
    """The mode BOT_CALENDAR_TOKEN=user refuses to start without its public address."""
    public_url = written.value.rstrip("/")
    parts = urlsplit(public_url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if _user_mode(written) and (
        not parts.netloc or not (parts.scheme == "https" or (parts.scheme == "http" and loopback))
    ):
        raise ConfigError(
            "BOT_PUBLIC_URL must be the bot's public https address (e.g. https://my-bot.herokuapp.com) with "
            f"BOT_CALENDAR_TOKEN=user, not {public_url!r}"
        )
    return public_url


def _secret_key(written: Written) -> str:
    """The mode BOT_CALENDAR_TOKEN=user refuses to start without a real secret key; its value is never echoed."""
    weakness = key_weakness(written.value) if _user_mode(written) else ""
    if weakness:
        raise ConfigError(
            f"BOT_SECRET_KEY {weakness} with BOT_CALENDAR_TOKEN=user: make one with "
            f"`{MAKE_A_KEY}` and keep it (changing it disconnects every user)"
        )
    return written.value


def _dyno(written: Written) -> str:
    """A web dyno in app-token mode would be killed by Heroku: its $PORT is never served."""
    if written.value.startswith("web.") and not _user_mode(written):
        raise ConfigError(
            f"DYNO is {written.value}: the web process type serves the OAuth redirect of BOT_CALENDAR_TOKEN=user; "
            "with app tokens run the worker instead (heroku ps:scale web=0 worker=1)"
        )
    return written.value


# Every variable the bot reads, in the order docs/admin.md, `python -m bot --help` and app.json present them.
# Each row also names the Config field it sets and how its value is read: Config.from_env is a loop over them.
VARIABLES = (
    Variable(
        "DINGTALK_CLIENT_ID", REQUIRED, "the app's Client ID / AppKey; also the robot code", "client_id", _required
    ),
    Variable(
        "DINGTALK_CLIENT_SECRET",
        REQUIRED,
        "the app's Client Secret / AppSecret; never logged",
        "client_secret",
        _required,
    ),
    Variable(
        "DINGTALK_APP_TYPE",
        "internal",
        "internal: an organization's own app (its AppKey/AppSecret); isv: a third-party enterprise app serving every "
        "organization that authorized it (DINGTALK_CLIENT_ID/SECRET are then the SuiteKey/SuiteSecret)",
        "app_type",
        _choice(APP_TYPES, str.lower),
    ),
    Variable(
        "DINGTALK_REGION",
        "cn",
        "cn: mainland DingTalk (api.dingtalk.com, oapi.dingtalk.com); intl: international DingTalk "
        "(api.dingtalk.io, oapi.dingtalk.io)",
        "region",
        _choice(REGIONS, str.lower),
    ),
    Variable(
        "DINGTALK_API_BASE",
        "(from the region)",
        "new-style OpenAPI host, also the Stream gateway host, e.g. https://api.dingtalk.com; overrides the region",
        "api_base",
        _base_url,
        unset=lambda read: REGIONS[read["region"]][0],
    ),
    Variable(
        "DINGTALK_OAPI_BASE",
        "(from the region)",
        "old-style API host (topapi), e.g. https://oapi.dingtalk.com; overrides the region",
        "oapi_base",
        _base_url,
        unset=lambda read: REGIONS[read["region"]][1],
    ),
    Variable(
        "BOT_LOCALE",
        "zh_CN",
        "card language (zh_CN or en) for a message the bot cannot read from someone whose language it has not "
        "seen yet; otherwise cards follow the command's language, or the sender's last one",
        "locale",
        _choice(LOCALES, str),
    ),
    Variable(
        "BOT_HTTP_TIMEOUT",
        "10",
        "seconds one DingTalk HTTP exchange may take in all (connect, send, read the whole answer)",
        "http_timeout",
        _positive_float,
    ),
    Variable("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR", "log_level", _choice(LOG_LEVELS, str.upper)),
    Variable(
        "BOT_MAX_IN_FLIGHT",
        "256",
        "messages handled at once; more wait in arrival order (ACKs never wait)",
        "max_in_flight",
        _positive_int,
    ),
    Variable(
        "BOT_COMMAND_TIMEOUT",
        "20",
        "seconds a command may keep retrying DingTalk before the 'DingTalk is busy' card; the reply has a budget "
        "of its own",
        "command_timeout",
        _positive_float,
    ),
    Variable(
        "BOT_API_QPS",
        "20",
        "calls per second per DingTalk API (DingTalk counts each API separately)",
        "api_qps",
        _positive_float,
    ),
    Variable(
        "BOT_USER_RATE",
        "10",
        "commands per sender per minute, help included; the next gets a 'slow down' card, later ones are dropped",
        "user_rate",
        _positive_int,
    ),
    Variable(
        "BOT_USER_RATE_WINDOW",
        "60",
        "seconds of the per-sender sliding window of BOT_USER_RATE; also how often one sender may be told the bot "
        "is busy",
        "user_rate_window",
        _positive_float,
    ),
    Variable(
        "BOT_MAX_IN_FLIGHT_PER_SENDER",
        "1",
        "messages of one sender handled at once; the next starts when one is done, behind other senders' waiting "
        "messages (round robin), in the order sent",
        "max_in_flight_per_sender",
        _positive_int,
    ),
    Variable(
        "BOT_INBOX_CAPACITY",
        "10000",
        "messages that may wait for a worker (each 1,024 characters of text count one more); beyond it, or beyond "
        "100 waiting from one sender, a message gets a short 'busy, try again in a minute' card",
        "inbox_capacity",
        _positive_int,
    ),
    Variable(
        "BOT_DEDUPE_SECONDS",
        "600",
        "how long a handled msgId is remembered so a repeat is dropped (at least this, at most twice it, at most "
        "200,000 ids); with Redis, the lifetime of the shared claim",
        "dedupe_seconds",
        _positive_float,
    ),
    Variable(
        "BOT_HEARTBEAT_SECONDS",
        "60",
        "how often the heartbeat log line with counters is written",
        "heartbeat_seconds",
        _positive_float,
    ),
    Variable(
        "BOT_STREAM_PING_SECONDS",
        "20",
        "WebSocket ping interval; a socket with no pong for as long again is replaced",
        "ping_seconds",
        _positive_float,
    ),
    Variable(
        "BOT_STREAM_RETRY_SECONDS",
        "1",
        "pause before the first reconnect of the Stream connection; it doubles after each failed or short-"
        "lived (under a minute) connection, up to 60 s, with jitter",
        "stream_retry_seconds",
        _positive_float,
    ),
    Variable(
        "BOT_RETRY_PAUSE_SCALE",
        "1",
        "multiplies every pause between retries of a DingTalk call (0.125-4 s, at least 1 s after a "
        "throttle); tests use 0.01, keep 1 in production",
        "retry_pause_scale",
        _positive_float,
    ),
    Variable(
        "BOT_FAULT",
        UNSET,
        "for tests of the watchdog only: stream-loop-ends or heartbeat-ends makes that task end; never set it"
        " in production",
        "fault",
        _fault,
    ),
    Variable(
        "BOT_STATE_DIR",
        "./state",
        "folder for the bot's embedded state (SQLite), used when REDIS_URL is unset; on a platform whose disk does "
        "not outlive the process (a Heroku dyno), use REDIS_URL for anything that must survive a restart",
        "state_dir",
        _folder,
    ),
    Variable(
        "BOT_ADMINS",
        "(none)",
        "comma-separated staff ids of the bot's admins: they may use stats and audit; anyone else is refused; in an "
        "ISV app each is written corpId:staffId (a staff id is unique only within its organization)",
        "admins",
        _staff_ids,
    ),
    Variable(
        "BOT_CONFIRM_SECONDS",
        "600",
        "how long the Confirm button of a bulk unsubscribe preview works; tests shorten it",
        "confirm_seconds",
        _positive_float,
    ),
    Variable(
        "BOT_CALENDAR_TOKEN",
        "app",
        "app: calendar calls use the app's token (it needs the organization-wide calendar permission); user: each "
        "user connects their DingTalk account once (OAuth) and calendar calls use their own token",
        "calendar_token",
        _choice(CALENDAR_TOKENS, str.lower),
    ),
    Variable(
        "DINGTALK_OAUTH_CLIENT_ID",
        "(DINGTALK_CLIENT_ID)",
        "with BOT_CALENDAR_TOKEN=user: the OAuth client (a third-party personal app's AppId); by default the robot "
        "app's own",
        "oauth_client_id",
        _text,
        unset=lambda read: read["client_id"],
    ),
    Variable(
        "DINGTALK_OAUTH_CLIENT_SECRET",
        "(DINGTALK_CLIENT_SECRET)",
        "with BOT_CALENDAR_TOKEN=user: the OAuth client's secret (AppSecret); never logged",
        "oauth_client_secret",
        _text,
        unset=lambda read: read["client_secret"],
    ),
    Variable(
        "DINGTALK_LOGIN_BASE",
        "https://login.dingtalk.com",
        "with BOT_CALENDAR_TOKEN=user: where users are sent to consent (DingTalk's OAuth authorize page)",
        "login_base",
        _base_url,
    ),
    Variable(
        "BOT_PUBLIC_URL",
        USER_MODE_ONLY,
        "with BOT_CALENDAR_TOKEN=user: the bot's public https address; DingTalk redirects users to "
        "{BOT_PUBLIC_URL}/oauth/callback, which must be registered in the developer console",
        "public_url",
        _public_url,
    ),
    Variable(
        "BOT_SECRET_KEY",
        USER_MODE_ONLY,
        "with BOT_CALENDAR_TOKEN=user: at least 32 random characters, not a pattern (e.g. python -c 'import "
        "secrets; print(secrets.token_urlsafe(48))'); signs the connect links and encrypts users' refresh tokens at "
        "rest (changing it disconnects every user); never logged",
        "secret_key",
        _secret_key,
    ),
    Variable(
        "PORT",
        "(5000; Heroku sets it)",
        "with BOT_CALENDAR_TOKEN=user: the HTTP port of the OAuth redirect (Heroku sets it for a web process)",
        "port",
        _port,
        unset="5000",
    ),
    Variable(
        "BOT_CARD_TEMPLATE_ID",
        UNSET,
        "the id (ending in .schema) of the card template imported from templates/cards/calendar-card.json and "
        "published in the card platform (needs Card.Instance.Write): cards with buttons update in place and "
        "presses arrive over Stream; unset: ActionCards with links, as before. An ISV app whose organizations "
        "each import the template gives corpId=templateId pairs, comma-separated, optionally with one bare id "
        "for every other organization (dingabc=tplA,dingxyz=tplB,tplDefault); an organization with no id gets "
        "today's cards",
        "card_templates",
        _card_templates,
    ),
    Variable(
        "REDIS_URL",
        UNSET,
        "redis://... or rediss://... (TLS): share state between dynos; unset: state in SQLite in BOT_STATE_DIR "
        "(one dyno)",
        "redis_url",
        _redis_url,
    ),
    Variable(
        "BOT_JOURNAL_CLAIM_SECONDS",
        "30",
        "with REDIS_URL: how long an unfinished command of a process that is gone (killed, crashed, or restarted: "
        "its successor included) waits before a live process takes it over and finishes it",
        "journal_claim_seconds",
        _positive_float,
    ),
    Variable(
        "DYNO",
        "(set by Heroku)",
        "this process's name, e.g. worker.1: with REDIS_URL it begins the journal's consumer name "
        "(worker.1:<pid>:<random>, one per process); without REDIS_URL, it means a journal that does not survive "
        "the dyno (a warning at start)",
        "dyno",
        _dyno,
    ),
    Variable(
        "REDIS_TLS_VERIFY",
        "false",
        "verify the certificate of a rediss:// server (off because Heroku's Redis certificate is self-signed)",
        "redis_tls_verify",
        _flag,
    ),
)


@dataclass(frozen=True, slots=True)
class Config:
    """The settings, one field per row of VARIABLES (their defaults are written there)."""

    client_id: str
    client_secret: str
    app_type: str
    region: str
    api_base: str
    oapi_base: str
    locale: str
    http_timeout: float
    log_level: str
    max_in_flight: int
    command_timeout: float
    api_qps: float
    user_rate: int
    user_rate_window: float
    max_in_flight_per_sender: int
    inbox_capacity: int
    dedupe_seconds: float
    heartbeat_seconds: float
    ping_seconds: float
    stream_retry_seconds: float
    retry_pause_scale: float
    fault: str
    state_dir: str
    admins: frozenset[str]
    confirm_seconds: float
    calendar_token: str
    oauth_client_id: str
    oauth_client_secret: str
    login_base: str
    public_url: str
    secret_key: str
    port: int
    card_templates: CardTemplates  # set: interactive cards (bot/cards/interactive.py); unset: ActionCards as before
    redis_url: str
    journal_claim_seconds: float
    dyno: str
    redis_tls_verify: bool

    @property
    def user_tokens(self) -> bool:
        """Calendar calls use each user's own token (BOT_CALENDAR_TOKEN=user)."""
        return self.calendar_token == "user"  # noqa: S105 - a mode, not a secret

    @property
    def is_isv(self) -> bool:
        return self.app_type == "isv"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """The configuration, or ConfigError listing every problem found (not only the first), in the table's order."""
        problems: list[str] = []
        read: dict[str, Any] = {}
        for variable in VARIABLES:
            try:
                read[variable.field] = variable.read(env, read)
            except ConfigError as error:
                problems.extend(error.problems)
                read[variable.field] = variable.fallback(read)
        if problems:
            raise ConfigError(*problems)
        return cls(**read)


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
