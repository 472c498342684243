"""One specification per store interface, run against every implementation: in-process, SQLite on a tmp dir, Redis
on a real redis-server, and the Redis-to-local fallback wrapper over a live Redis and over one that is down; removing
an organization, across every store of each backend; the journal (SQLite, Redis Stream). The preview and audit stores'
contract is in test_stores.py (tests/stores/test_previews_audit.py once the tests are mirrored)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.config import Config
from bot.models import Tenant, Verdict
from bot.sandbox.platform import Sandbox
from bot.stores import keys
from bot.stores.admission import Admission, MemoryAdmission
from bot.stores.audit import AuditRecord, MemoryAudit
from bot.stores.build import Stores, build_stores
from bot.stores.cards import CardRecord, MemoryCards
from bot.stores.fallback import Failover, FallbackAdmission, FallbackLimiter, FallbackTokens, FallbackUnionIds
from bot.stores.grants import MemoryGrants, UserGrants
from bot.stores.journal import Journal
from bot.stores.keys import KeyBuilder
from bot.stores.languages import LastLanguages
from bot.stores.limiter import ApiLimiter, MemoryLimiter
from bot.stores.previews import MemoryPreviews
from bot.stores.redis.admission import RedisAdmission
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import connect
from bot.stores.redis.grants import RedisGrants
from bot.stores.redis.journal import RedisJournal
from bot.stores.redis.limiter import RedisLimiter
from bot.stores.redis.suite_tickets import RedisSuiteTickets
from bot.stores.redis.tokens import RedisTokens
from bot.stores.redis.union_ids import RedisUnionIds
from bot.stores.sqlite.database import Database
from bot.stores.sqlite.grants import SqliteGrants
from bot.stores.sqlite.journal import SqliteJournal
from bot.stores.sqlite.suite_tickets import SqliteSuiteTickets
from bot.stores.suite_tickets import MemorySuiteTickets, SuiteTickets
from bot.stores.tokens import MemoryTokens, TokenCache
from bot.stores.union_ids import MemoryUnionIds, UnionIds
from tests.botprocess import BotProcess
from tests.helpers import running_bot, started_sandbox
from tests.helpers_journal import journaled
from tests.redisserver import RedisServer, free_port

KEYS = KeyBuilder("contract")
PREFIX = KEYS.prefix  # calbot:contract:
WINDOW = 0.3  # seconds of the sliding windows under test: short, so no test waits long
HOSTILE_KEYS = ("corp'; DROP TABLE suite_tickets; --", "组织/用户 ?#%", "a\x00b", "")

LOOPS = ("memory", "redis", "fallback", "fallback, redis down")  # stores with a local fallback
DURABLE = ("sqlite", "redis")  # stores of what must survive a restart
KEPT = ("memory", *DURABLE)


class Backends:
    """The Redis connections and SQLite databases one test opened, closed after it."""

    def __init__(self, redis_server: RedisServer, tmp_path: Path) -> None:
        self._redis_server = redis_server
        self._tmp_path = tmp_path
        self._batchers: list[CommandBatcher] = []
        self._databases: list[Database] = []
        self._limiters: list[RedisLimiter] = []

    def redis(self) -> CommandBatcher:
        return self._batcher(self._redis_server.url)

    def redis_down(self) -> CommandBatcher:
        """A client of a Redis that does not answer: nothing listens on its port."""
        return self._batcher(f"redis://127.0.0.1:{free_port()}/0")

    def _batcher(self, url: str) -> CommandBatcher:
        batcher = CommandBatcher(connect(url, verify_tls=False))
        self._batchers.append(batcher)
        return batcher

    async def database(self) -> Database:
        database = await Database(self._tmp_path / "state" / "bot.sqlite3").open()
        self._databases.append(database)
        return database

    def limiter(self, batcher: CommandBatcher, rate: int) -> RedisLimiter:
        limiter = RedisLimiter(batcher, KEYS, rate, window=WINDOW)
        self._limiters.append(limiter)
        return limiter

    async def close(self) -> None:
        for limiter in self._limiters:
            limiter.close()
        for batcher in self._batchers:
            await batcher.aclose()
        for database in self._databases:
            await database.close()


@pytest_asyncio.fixture
async def backends(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Backends]:
    opened = Backends(redis_server, tmp_path)
    yield opened
    await opened.close()


def with_fallback(kind: str, backends: Backends, wrap: Callable[[CommandBatcher, Failover], Any]) -> Any:
    """The Redis store wrapped with its local fallback, over a live Redis or one that is down."""
    return wrap(backends.redis_down() if kind.endswith("down") else backends.redis(), Failover())


# --- admission ------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=LOOPS)
async def admission(request: pytest.FixtureRequest, backends: Backends) -> Admission:
    def memory() -> MemoryAdmission:
        return MemoryAdmission(user_rate=2, user_window=WINDOW)

    def redis(batcher: CommandBatcher) -> RedisAdmission:
        return RedisAdmission(batcher, KEYS, user_rate=2, user_window=WINDOW)

    if request.param == "memory":
        return memory()
    if request.param == "redis":
        return redis(backends.redis())
    wrapped: Admission = with_fallback(
        request.param, backends, lambda batcher, failover: FallbackAdmission(redis(batcher), memory(), failover)
    )
    return wrapped


async def test_admission_allows_the_rate_then_says_slow_down_once_then_drops(admission: Admission) -> None:
    verdicts = [await admission.admit(f"m{n}", "sender") for n in range(4)]
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.SLOW_DOWN, Verdict.DROP]
    assert all(isinstance(verdict, Verdict) for verdict in verdicts)


async def test_admission_takes_a_message_once_and_does_not_count_its_repeats(admission: Admission) -> None:
    assert await admission.admit("same", "sender") == Verdict.ALLOW
    assert [await admission.admit("same", "sender") for _ in range(3)] == [Verdict.TAKEN] * 3
    assert await admission.admit("other", "sender") == Verdict.ALLOW  # the repeats did not count


async def test_admission_counts_each_sender_apart(admission: Admission) -> None:
    for n in range(2):
        assert await admission.admit(f"a{n}", "alice") == Verdict.ALLOW
    assert await admission.admit("b0", "bob") == Verdict.ALLOW


async def test_admission_forgets_a_sender_after_the_window(admission: Admission) -> None:
    for n in range(3):
        await admission.admit(f"m{n}", "sender")
    await asyncio.sleep(WINDOW + 0.05)
    assert await admission.admit("later", "sender") == Verdict.ALLOW


# --- per-API limiter --------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=LOOPS)
async def limiter(request: pytest.FixtureRequest, backends: Backends) -> ApiLimiter:
    if request.param == "memory":
        return MemoryLimiter(2, window=WINDOW)
    if request.param == "redis":
        return backends.limiter(backends.redis(), 2)
    wrapped: ApiLimiter = with_fallback(
        request.param,
        backends,
        lambda batcher, failover: FallbackLimiter(
            backends.limiter(batcher, 2), MemoryLimiter(2, window=WINDOW), failover
        ),
    )
    return wrapped


async def test_the_limiter_lets_no_more_than_the_rate_in_within_a_window(limiter: ApiLimiter) -> None:
    entered: list[float] = []
    waits: list[float] = []

    async def one_call() -> None:
        async with limiter.slot("calendar/unsubscribe") as waited:
            entered.append(time.monotonic())
            waits.append(waited)

    await asyncio.gather(*(one_call() for _ in range(4)))
    entered.sort()
    assert entered[1] - entered[0] < WINDOW / 2  # the first two did not wait
    assert entered[2] - entered[0] >= WINDOW * 0.9  # a call counts until a window after it ended
    assert max(waits) >= WINDOW * 0.9 and min(waits) >= 0


async def test_the_limiter_counts_each_api_apart(limiter: ApiLimiter) -> None:
    started = time.monotonic()
    for api in ("user/get", "user/get", "calendars", "calendars", "batchSend"):
        async with limiter.slot(api):
            pass
    assert time.monotonic() - started < WINDOW * 0.9


async def test_a_failed_call_keeps_its_error_and_gives_its_slot_back(limiter: ApiLimiter) -> None:
    with pytest.raises(ValueError, match="the call failed"):
        async with limiter.slot("subscribe"):
            raise ValueError("the call failed")
    async with limiter.slot("subscribe") as waited:
        assert waited < WINDOW / 2
    async with limiter.slot("subscribe") as waited:  # the failed call counted until a window after it ended
        assert WINDOW / 2 <= waited <= WINDOW * 1.5


# --- token cache ------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=LOOPS)
async def tokens(request: pytest.FixtureRequest, backends: Backends) -> TokenCache:
    if request.param == "memory":
        return MemoryTokens()
    if request.param == "redis":
        return RedisTokens(backends.redis(), KEYS)
    wrapped: TokenCache = with_fallback(
        request.param,
        backends,
        lambda batcher, failover: FallbackTokens(RedisTokens(batcher, KEYS), MemoryTokens(), failover),
    )
    return wrapped


async def test_tokens_are_kept_by_key_for_their_lifetime(tokens: TokenCache) -> None:
    assert await tokens.get("app") == ""
    await tokens.put("app", "app-token", 60)
    await tokens.put("org:corp1", "corp1-token", 60)
    await tokens.put("user:corp1:staff1", "user-token", 0.1)

    assert await tokens.get("app") == "app-token"
    assert await tokens.get("org:corp1") == "corp1-token"
    assert await tokens.get("org:corp2") == ""
    assert await tokens.get("user:corp1:staff1") == "user-token"
    await asyncio.sleep(0.2)
    assert await tokens.get("user:corp1:staff1") == ""
    assert await tokens.get("app") == "app-token"


async def test_a_token_is_dropped_only_while_it_is_the_rejected_one(tokens: TokenCache) -> None:
    await tokens.put("app", "new", 60)
    await tokens.drop("app", "old")  # another caller already replaced the rejected token
    assert await tokens.get("app") == "new"
    await tokens.drop("app", "new")
    assert await tokens.get("app") == ""
    await tokens.drop("org:never-stored", "x")


async def test_one_fetch_at_a_time_per_key_and_keys_do_not_wait_for_each_other(tokens: TokenCache) -> None:
    first_in, second_in = asyncio.Event(), asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with tokens.fetching("org:corp1"):
            first_in.set()
            await release.wait()
            await tokens.put("org:corp1", "fetched", 60)

    async def second() -> str:
        await first_in.wait()
        async with tokens.fetching("org:corp1"):
            second_in.set()
            return await tokens.get("org:corp1")

    holder, waiter = asyncio.create_task(first()), asyncio.create_task(second())
    await first_in.wait()
    async with asyncio.timeout(1):
        async with tokens.fetching("org:corp2"):  # another organization's fetch is not held up
            pass
    await asyncio.sleep(0.1)
    assert not second_in.is_set()
    release.set()
    await holder
    assert await asyncio.wait_for(waiter, 5) == "fetched"  # it finds the token the first one stored


# --- unionIds ---------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=LOOPS)
async def union_ids(request: pytest.FixtureRequest, backends: Backends) -> UnionIds:
    if request.param == "memory":
        return MemoryUnionIds()
    if request.param == "redis":
        return RedisUnionIds(backends.redis(), KEYS)
    wrapped: UnionIds = with_fallback(
        request.param,
        backends,
        lambda batcher, failover: FallbackUnionIds(RedisUnionIds(batcher, KEYS), MemoryUnionIds(), failover),
    )
    return wrapped


async def test_union_ids_are_remembered_by_staff_id(union_ids: UnionIds) -> None:
    assert await union_ids.get("staff1") is None
    await union_ids.put("staff1", "union1")
    await union_ids.put("staff2", "union2")
    assert await union_ids.get("staff1") == "union1"
    assert await union_ids.get("staff2") == "union2"
    assert await union_ids.get("staff3") is None


async def test_an_organizations_union_ids_are_forgotten_and_no_others(union_ids: UnionIds) -> None:
    for n in range(1200):  # more than one SCAN step of Redis
        await union_ids.put(f"dingA:staff{n}", f"a{n}")
    await union_ids.put("dingB:staff1", "b1")
    await union_ids.put("ding*:staff1", "star1")  # a pattern character in an id is an ordinary character
    await union_ids.put("ding:staff1", "plain1")

    await union_ids.forget_organization("ding*")
    await union_ids.forget_organization("dingA")

    assert [await union_ids.get(key) for key in ("dingA:staff0", "dingA:staff1199", "ding*:staff1")] == [None] * 3
    assert await union_ids.get("dingB:staff1") == "b1"
    assert await union_ids.get("ding:staff1") == "plain1"


def test_the_in_process_union_ids_hold_at_most_their_capacity() -> None:
    async def fill() -> tuple[str | None, str | None]:
        cache = MemoryUnionIds(capacity=3)
        for n in range(5):
            await cache.put(f"s{n}", f"u{n}")
        return await cache.get("s0"), await cache.get("s4")

    assert asyncio.run(fill()) == (None, "u4")


# --- suite tickets ----------------------------------------------------------------------------------------------


async def open_tickets(kind: str, backends: Backends) -> SuiteTickets:
    if kind == "memory":
        return MemorySuiteTickets()
    if kind == "sqlite":
        tickets = SqliteSuiteTickets(await backends.database())
        await tickets.create()
        return tickets
    return RedisSuiteTickets(backends.redis(), KEYS)


@pytest.mark.parametrize("kind", KEPT)
async def test_the_latest_ticket_of_each_suite_is_kept(kind: str, backends: Backends) -> None:
    tickets = await open_tickets(kind, backends)
    assert await tickets.latest("suite1") is None
    await tickets.store("suite1", "ticket-1")
    await tickets.store("suite2", "other")
    await tickets.store("suite1", "ticket-2")
    assert await tickets.latest("suite1") == "ticket-2"
    assert await tickets.latest("suite2") == "other"
    for key in HOSTILE_KEYS:
        await tickets.store(key, f"for {key!r}")
    assert [await tickets.latest(key) for key in HOSTILE_KEYS] == [f"for {key!r}" for key in HOSTILE_KEYS]


@pytest.mark.parametrize("kind", DURABLE)
async def test_a_ticket_survives_a_restart(kind: str, backends: Backends) -> None:
    await (await open_tickets(kind, backends)).store("suite1", "ticket-1")
    restarted = await open_tickets(kind, backends)  # a new connection, or the database file opened again
    assert await restarted.latest("suite1") == "ticket-1"


# --- user grants ------------------------------------------------------------------------------------------------

BLOB = bytes(range(256)) + b"\x00\xff not utf-8: \xc3\x28"


async def open_grants(kind: str, backends: Backends) -> UserGrants:
    if kind == "memory":
        return MemoryGrants()
    if kind == "sqlite":
        grants = SqliteGrants(await backends.database())
        await grants.create()
        return grants
    return RedisGrants(backends.redis(), KEYS)


@pytest.mark.parametrize("kind", KEPT)
async def test_a_grant_is_kept_byte_for_byte_replaced_and_deleted(kind: str, backends: Backends) -> None:
    grants = await open_grants(kind, backends)
    assert await grants.get("corp1:staff1") is None
    await grants.put("corp1:staff1", BLOB)
    await grants.put("corp1:staff2", b"other")
    assert await grants.get("corp1:staff1") == BLOB
    await grants.put("corp1:staff1", b"renewed")
    assert await grants.get("corp1:staff1") == b"renewed"
    assert await grants.delete("corp1:staff1") is True
    assert await grants.delete("corp1:staff1") is False
    assert await grants.get("corp1:staff1") is None
    assert await grants.get("corp1:staff2") == b"other"
    for key in HOSTILE_KEYS:
        await grants.put(key, key.encode())
    assert [await grants.get(key) for key in HOSTILE_KEYS] == [key.encode() for key in HOSTILE_KEYS]


@pytest.mark.parametrize("kind", KEPT)
async def test_a_grant_given_a_lifetime_is_gone_after_it_and_no_longer_kept(kind: str, backends: Backends) -> None:
    grants = await open_grants(kind, backends)
    await grants.put("pending:corp1:staff1", b"waiting", expires_in=0.3)
    await grants.put("corp1:staff1", b"for good")
    assert await grants.get("pending:corp1:staff1") == b"waiting"
    await wait_until(lambda: grants.get("pending:corp1:staff1"), None)
    await grants.put("corp1:staff2", b"a later put")
    assert await grants.get("corp1:staff1") == b"for good"
    if kind == "sqlite":  # gone from the file, not only hidden
        rows = await (await backends.database()).execute("SELECT user_key FROM user_grants ORDER BY user_key")
        assert rows == [("corp1:staff1",), ("corp1:staff2",)]
    if kind == "redis":
        assert await backends.redis().send("EXISTS", f"{PREFIX}grant:pending:corp1:staff1") == 0


async def test_grants_in_a_file_from_before_lifetimes_are_kept_and_pending_ones_expire(backends: Backends) -> None:
    database = await backends.database()
    await database.execute(
        "CREATE TABLE user_grants (user_key TEXT PRIMARY KEY, grant_blob BLOB NOT NULL, stored_at REAL NOT NULL)"
    )
    await database.execute("INSERT INTO user_grants VALUES ('corp1:old', x'01', 0)")
    grants = SqliteGrants(database)
    await grants.create()
    await grants.put("pending:corp1:new", b"waiting", expires_in=0.2)
    assert await grants.get("corp1:old") == b"\x01"
    await wait_until(lambda: grants.get("pending:corp1:new"), None)


async def wait_until(read: Callable[[], Awaitable[object]], expected: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await read() != expected:
        assert asyncio.get_running_loop().time() < deadline, f"still not {expected!r}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", DURABLE)
async def test_a_grant_survives_a_restart(kind: str, backends: Backends) -> None:
    await (await open_grants(kind, backends)).put("corp1:staff1", BLOB)
    restarted = await open_grants(kind, backends)
    assert await restarted.get("corp1:staff1") == BLOB


# --- the fallback wrapper with a Redis that dies ----------------------------------------------------------------


async def test_when_redis_dies_the_stores_go_on_locally_and_use_redis_again_once_it_is_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    batcher = CommandBatcher(connect(redis_server.url, verify_tls=False))
    failover = Failover(retry_seconds=0.05)
    admission = FallbackAdmission(RedisAdmission(batcher, KEYS, user_rate=100), MemoryAdmission(100), failover)
    redis_limiter = RedisLimiter(batcher, KEYS, 100)
    limiter = FallbackLimiter(redis_limiter, MemoryLimiter(100), failover)
    tokens = FallbackTokens(RedisTokens(batcher, KEYS), MemoryTokens(), failover)
    union_ids = FallbackUnionIds(RedisUnionIds(batcher, KEYS), MemoryUnionIds(), failover)
    observer = redis_server.client()
    caplog.set_level(logging.INFO, logger="bot.redis")
    try:
        assert await admission.admit("before", "sender") == Verdict.ALLOW
        await tokens.put("app", "shared", 60)
        assert await observer.get(f"{PREFIX}token:app") == "shared"

        redis_server.stop()
        assert [await admission.admit(f"down{n}", "sender") for n in range(3)] == [Verdict.ALLOW] * 3
        async with limiter.slot("user/get") as waited:
            assert waited < 1
        await union_ids.put("staff1", "union1")
        assert await union_ids.get("staff1") == "union1"
        assert await tokens.get("app") == "shared"  # this dyno's copy
        async with asyncio.timeout(2), tokens.fetching("app"):  # no lock across dynos to be had
            await tokens.put("app", "fetched-while-down", 60)
        assert await tokens.get("app") == "fetched-while-down"
        unavailable = [r for r in caplog.records if r.getMessage() == "redis unavailable: using in-process state"]
        assert len(unavailable) == 1

        await redis_server.start()
        async with asyncio.timeout(5):  # tried again once the failover's pause is over
            while not _logged(caplog, "redis reachable again: state is shared across dynos"):
                assert await admission.admit(f"again{time.monotonic_ns()}", "sender") == Verdict.ALLOW
                await asyncio.sleep(0.02)
        assert await admission.admit("after", "sender") == Verdict.ALLOW
        await observer.aclose()
        observer = redis_server.client()  # its connection died with the first server
        assert await observer.exists(f"{PREFIX}msg:after") == 1
        async with limiter.slot("user/get"):
            pass
        assert await observer.zcard(f"{PREFIX}api:user/get") == 1  # counted in Redis again
    finally:
        redis_limiter.close()
        await batcher.aclose()
        await observer.aclose()


async def test_calls_waiting_for_a_shared_slot_when_redis_dies_get_a_local_one(redis_server: RedisServer) -> None:
    batcher = CommandBatcher(connect(redis_server.url, verify_tls=False))
    redis_limiter = RedisLimiter(batcher, KEYS, 1, window=60)  # one call a minute: the others wait in Redis
    limiter = FallbackLimiter(redis_limiter, MemoryLimiter(100), Failover())
    try:
        async with limiter.slot("calendars"):
            pass
        waiting = [asyncio.create_task(_enter(limiter)) for _ in range(5)]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in waiting)
        redis_server.stop()
        async with asyncio.timeout(5):
            assert await asyncio.gather(*waiting) == [True] * 5
    finally:
        redis_limiter.close()
        await batcher.aclose()


async def _enter(limiter: ApiLimiter) -> bool:
    async with limiter.slot("calendars"):
        return True


def _logged(caplog: pytest.LogCaptureFixture, message: str) -> bool:
    return any(record.getMessage() == message for record in caplog.records)


# --- which store a configuration gets ---------------------------------------------------------------------------


async def test_without_redis_what_must_survive_is_in_sqlite_created_on_open(tmp_path: Path) -> None:
    config = Config.from_env(
        {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "s", "BOT_STATE_DIR": str(tmp_path)}
    )
    stores = build_stores(config)
    await stores.open()
    await stores.suite_tickets.store("suite1", "ticket-1")
    await stores.user_grants.put("corp1:staff1", BLOB)
    await stores.close()

    assert (tmp_path / "bot.sqlite3").exists()
    restarted = build_stores(config)
    await restarted.open()
    assert await restarted.suite_tickets.latest("suite1") == "ticket-1"
    assert await restarted.user_grants.get("corp1:staff1") == BLOB
    await restarted.close()


async def test_with_redis_what_must_survive_is_in_redis_and_no_file_is_made(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "s", "BOT_STATE_DIR": str(tmp_path / "state")}
    stores = build_stores(Config.from_env({**env, "REDIS_URL": redis_server.url}))
    await stores.open()
    await stores.suite_tickets.store("suite1", "ticket-1")
    await stores.user_grants.put("corp1:staff1", b"grant")
    await stores.close()

    observer = redis_server.client()
    assert await observer.get("calbot:id:suite-ticket:suite1") == "ticket-1"
    assert await observer.exists("calbot:id:grant:corp1:staff1") == 1
    await observer.aclose()
    assert not (tmp_path / "state").exists()


async def test_a_state_folder_that_cannot_be_used_stops_the_bot_at_start_with_a_clear_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("a file where the folder should be")
    process = await BotProcess({**sandbox.bot_env(), "BOT_STATE_DIR": str(not_a_folder)}).start()

    assert await process.wait() == 1
    [line] = process.logs("the bot's state cannot be kept, exiting")
    assert line["problem"].startswith(f"BOT_STATE_DIR: {not_a_folder} cannot be used")
    assert "Traceback" not in process.output


async def test_the_bot_creates_its_database_in_the_state_folder_at_start(tmp_path: Path) -> None:
    env = {"BOT_STATE_DIR": str(tmp_path / "new" / "state")}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as process:  # connected: started
        assert (tmp_path / "new" / "state" / "bot.sqlite3").exists()
        assert await process.stop() == 0


@pytest.mark.parametrize("kind", KEPT)
@pytest.mark.parametrize("corp", ["corp1", "co%rp_*?[1]"])
async def test_forgetting_an_organization_deletes_its_grants_and_pending_connects_only(
    kind: str, corp: str, backends: Backends
) -> None:
    grants = await open_grants(kind, backends)
    mine = [f"{corp}:staff1", f"pending:{corp}:staff1"]
    others = ["corp10:staff1", "pending:corp10:staff1", "corp2:staff1", f"x{corp}:staff1"]
    for user in mine + others:
        await grants.put(user, BLOB)

    forgotten = await grants.forget_organization(corp)

    assert forgotten == 2
    assert [await grants.get(user) for user in mine] == [None, None]
    assert [await grants.get(user) for user in others] == [BLOB] * len(others)


async def test_a_ticket_table_of_an_earlier_version_gets_its_born_time_and_keeps_its_ticket(backends: Backends) -> None:
    database = await backends.database()
    await database.execute(
        "CREATE TABLE suite_tickets (suite_key TEXT PRIMARY KEY, ticket TEXT NOT NULL, stored_at REAL NOT NULL)"
    )
    await database.execute("INSERT INTO suite_tickets VALUES ('suite1', 'ticket-old-version', 0)")
    tickets = SqliteSuiteTickets(database)

    await tickets.create()

    assert await tickets.latest("suite1") == "ticket-old-version"
    assert await tickets.store("suite1", "ticket-newer", born_ms=1_000)
    assert not await tickets.store("suite1", "ticket-older", born_ms=999)
    assert await tickets.latest("suite1") == "ticket-newer"


# --- removing an organization: one call, every store ------------------------------------------------------------

ISV_ENV = {"DINGTALK_CLIENT_ID": "suite", "DINGTALK_CLIENT_SECRET": "s", "DINGTALK_APP_TYPE": "isv"}


def memory_stores() -> Stores:
    """Every store in its in-process implementation."""
    return Stores(
        admission=MemoryAdmission(user_rate=1),
        limiter=MemoryLimiter(1, window=60),
        tokens=MemoryTokens(),
        union_ids=MemoryUnionIds(),
        suite_tickets=MemorySuiteTickets(),
        user_grants=MemoryGrants(),
        previews=MemoryPreviews(),
        audits=MemoryAudit(),
        journal=SqliteJournal(Path("/nonexistent/never-opened"), 600),
        languages=LastLanguages(),
        keys=KeyBuilder("suite"),
        cards=MemoryCards(),
    )


@pytest_asyncio.fixture(params=KEPT)
async def all_stores(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Stores]:
    """The stores a configuration gets (in-process, SQLite, Redis), an API's window a minute long: one call fills it."""
    if request.param == "memory":
        stores = memory_stores()
    else:
        redis_url = redis_server.url if request.param == "redis" else ""
        env = {**ISV_ENV, "BOT_STATE_DIR": str(tmp_path), "REDIS_URL": redis_url, "BOT_USER_RATE": "1"}
        stores = build_stores(Config.from_env(env), per_organization=True)
        await stores.open()
        stores.limiter = MemoryLimiter(1, window=60)
        if stores.redis is not None:
            stores.redis_limiter = RedisLimiter(stores.redis, stores.keys, 1, window=60)
            stores.limiter = FallbackLimiter(stores.redis_limiter, stores.limiter, Failover())
    yield stores
    await stores.close()


async def keep_one_of_each(stores: Stores, corp: str) -> None:
    """Something of every kind the bot keeps of an organization and its people (as the bot's own calls key it)."""
    tenant = Tenant(corp, "staff1")
    assert await stores.admission.admit(f"{corp}:m1", tenant.key) == Verdict.ALLOW  # its one command this minute
    async with stores.limiter.slot(keys.api(corp, "calendars")):  # its one call of the API this second
        pass
    await stores.tokens.put(keys.organization_token(corp), f"token of {corp}", 60)
    await stores.tokens.put(keys.user_token(tenant.key), f"user token of {corp}", 60)
    await stores.union_ids.put(keys.union_id(tenant, per_organization=True), f"union of {corp}")
    await stores.user_grants.put(tenant.key, b"grant")
    await stores.user_grants.put(keys.pending_connect(tenant.key), b"pending")
    await stores.previews.save("preview", tenant.key, "token1", {"corp": corp}, 60)
    stores.languages.remember(tenant.key, "zh")
    at = time.time()
    await stores.audits.record(AuditRecord(at, "unsubscribe", "staff1", corp, "u", "cal1", "N", "ok", "", "", "m1"))
    await stores.cards.save(f"card-{corp}", CardRecord(tenant.key, "cid", "2", corp, "robot", "en", ()))


async def what_is_kept(stores: Stores, corp: str) -> dict[str, object]:
    tenant = Tenant(corp, "staff1")
    limited = False
    try:
        async with asyncio.timeout(WINDOW):
            async with stores.limiter.slot(keys.api(corp, "calendars")):
                pass
    except TimeoutError:
        limited = True
    return {
        "sender window": await stores.admission.admit(f"{corp}:m2", tenant.key) != Verdict.ALLOW,
        "api window": limited,
        "organization token": await stores.tokens.get(keys.organization_token(corp)),
        "user token": await stores.tokens.get(keys.user_token(tenant.key)),
        "unionId": await stores.union_ids.get(keys.union_id(tenant, per_organization=True)),
        "grant": await stores.user_grants.get(tenant.key),
        "pending connect": await stores.user_grants.get(keys.pending_connect(tenant.key)),
        "preview": await stores.previews.claim("preview", tenant.key, "token1"),
        "language": stores.languages.of(tenant.key, "en") != "en",
        "audit trail": len(await stores.audits.latest("cal1", 10, corp)),
        "interactive card": await stores.cards.get(f"card-{corp}"),
    }


NOTHING_KEPT = {
    "sender window": False,
    "api window": False,
    "organization token": "",
    "user token": "",
    "unionId": None,
    "grant": None,
    "pending connect": None,
    "preview": None,
    "language": False,
    "audit trail": 1,  # kept on purpose: the audit trail lasts its 90 days whoever removed the app
    "interactive card": None,
}


@pytest.mark.parametrize("corp", ["corp1", "co%rp_*?[1]"])
async def test_removing_an_organization_forgets_every_kind_of_its_data_in_every_store_and_nothing_of_others(
    all_stores: Stores, corp: str
) -> None:
    # what an unescaped pattern would take too: LIKE's % and _, a glob's * ? [ ]; what a case-blind match would
    # take too (SQLite's LIKE ignores ASCII case): the organization's name in capitals is another organization
    others = ["corp10", "corp2", f"x{corp}", corp[:-1], "coZZrpQ*?[1]", "co%rp_abc1", corp.upper()]
    for organization in (corp, *others):
        await keep_one_of_each(all_stores, organization)

    assert await all_stores.forget_organization(corp) > 0

    assert await what_is_kept(all_stores, corp) == NOTHING_KEPT
    for kept in await asyncio.gather(*(what_is_kept(all_stores, other) for other in others)):
        assert [kind for kind, value in kept.items() if value == NOTHING_KEPT[kind] and kind != "audit trail"] == []


# --- the journal ------------------------------------------------------------------------------------------------

Opener = Callable[[], Journal]


@pytest.fixture(params=DURABLE)
def opener(request: pytest.FixtureRequest, tmp_path: Path, backends: Backends) -> Opener:
    """Opens the same journal again, as a restarted process would."""
    if request.param == "sqlite":
        return lambda: SqliteJournal(tmp_path / "journal.sqlite3", remember_seconds=600)
    return lambda: RedisJournal(backends.redis(), KEYS, "worker.1", 600, claim_seconds=30)


async def reopened(opener: Opener, work: Callable[[Journal], Awaitable[None]] | None = None) -> list[tuple[str, int]]:
    journal = opener()
    entries = await journal.open()
    if work is not None:
        await work(journal)
    await journal.close()
    return [(entry.message.msg_id, entry.attempts) for entry in entries]


async def test_an_entry_survives_until_finished_oldest_first_with_its_progress(opener: Opener) -> None:
    journal = opener()
    assert await journal.open() == []
    assert [await journal.add(journaled(n)) for n in (1, 2, 3)] == [True, True, True]
    await journal.record("msg-2", "0cal-2/changing", ["cal-2", "Holidays"])
    await journal.finish("msg-3")
    await journal.close()

    again = opener()
    entries = await again.open()
    await again.close()

    assert [(entry.message, entry.attempts) for entry in entries] == [(journaled(1), 1), (journaled(2), 1)]
    assert entries[1].progress == {"0cal-2/changing": ["cal-2", "Holidays"]}
    assert entries[0].progress == {}


async def test_each_start_counts_one_more_attempt(opener: Opener) -> None:
    journal = opener()
    await journal.open()
    await journal.add(journaled(1))
    await journal.close()

    assert [await reopened(opener) for _ in range(3)] == [[("msg-1", 1)], [("msg-1", 2)], [("msg-1", 3)]]


async def test_a_repeat_is_refused_while_unfinished_and_after_finishing(opener: Opener) -> None:
    journal = opener()
    await journal.open()
    assert await journal.add(journaled(1)) is True
    assert await journal.add(journaled(1)) is False
    await journal.close()

    async def finish_and_repeat(journal: Journal) -> None:
        await journal.finish("msg-1")
        assert await journal.add(journaled(1)) is False

    assert await reopened(opener, finish_and_repeat) == [("msg-1", 1)]
    assert await reopened(opener) == []


async def test_an_unwritable_sqlite_journal_accepts_everything_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    journal = SqliteJournal(tmp_path / "file" / "journal.sqlite3", remember_seconds=600)

    assert await journal.open() == []
    assert [await journal.add(journaled(1)), await journal.add(journaled(1))] == [True, True]
    await journal.record("msg-1", "card", True)
    await journal.finish("msg-1")
    await journal.close()
