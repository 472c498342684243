"""Wiring: builds every part from the Config, per app type, runs them, and shuts them down cleanly."""

from __future__ import annotations

import asyncio
import logging

from bot.auth.connect import Connector
from bot.auth.credentials import Authorizer
from bot.auth.isv import SuiteEvents
from bot.auth.oauth_web import OAuthServer
from bot.auth.policy import policy_for
from bot.auth.sealing import Sealer
from bot.auth.user_tokens import UserAuthorizer, UserTokens
from bot.auth.users import UserDirectory
from bot.cards.interactive import Interactive
from bot.cards.presses import PressDesk
from bot.config import Config
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.http import AiohttpTransport
from bot.pipeline import Busy, Pipeline
from bot.stores.build import StateUnavailable, build_stores
from bot.stream.inbox import Inbox
from bot.stream.intake import Intake
from bot.stream.repeats import Repeats
from bot.stream.transport import StreamClient
from bot.telemetry import Telemetry

log = logging.getLogger("bot.wiring")


class VitalTaskEnded(Exception):
    """The Stream loop or the heartbeat ended while the process was meant to run."""


class App:
    """The bot, built from its Config: takes Messages from the Stream connection and answers each one with a card."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy = policy_for(config)
        self.stores = build_stores(config, self.policy.per_organization)
        transport = AiohttpTransport(config.max_in_flight + 8)
        self.dingtalk = DingTalkClient(config, transport, self.stores.limiter, self.policy.robot_code(config))
        self.authorizer: Authorizer = self.policy.authorizer(config, self.stores, self.dingtalk)
        self.suite_events: SuiteEvents | None = self.policy.suite_events(config, self.stores)
        self.repeats = Repeats(self.stores.journal, self.stores.admission, config.dedupe_seconds)
        self.intake = Intake(self.stores.journal, self.repeats)
        self.user_tokens: UserTokens | None = None
        self.connector: Connector | None = None
        self.oauth: OAuthServer | None = None
        if config.user_tokens:  # calendar calls with each user's own token, connected through the OAuth redirect
            self._with_user_tokens(config)
        self.presses: PressDesk | None = None  # BOT_CARD_TEMPLATE_ID set: interactive cards, presses over Stream
        if config.card_templates:
            robot = self.policy.robot_code(config) or ""  # an ISV card goes as the message's own robot
            interactive = Interactive(config.card_templates, self.stores.cards, robot)
            self.presses = PressDesk(interactive, self.intake.add, per_organization=self.policy.per_organization)
        self.telemetry = Telemetry(self._counted_elsewhere, lambda: self.inbox.in_flight)
        self.pipeline = self._pipeline()
        self.busy = Busy(self.pipeline)
        self.inbox = Inbox(
            self.pipeline.handle,
            config.max_in_flight,
            self.busy.refuse,
            per_sender=config.max_in_flight_per_sender,
            capacity=config.inbox_capacity,
        )
        on_event = self.suite_events.handle if self.suite_events else None
        on_press = self.presses.answer if self.presses is not None else None
        per_organization = self.policy.per_organization
        self.stream = StreamClient(
            self.dingtalk, self.intake.accept, config, on_event, on_press, per_organization=per_organization
        )
        self._shutting_down = False

    def _pipeline(self) -> Pipeline:
        stores = self.stores
        return Pipeline(
            self.config,
            self.dingtalk,
            self.authorizer,
            self.intake,
            self.repeats,
            self.telemetry,
            audits=stores.audits,
            previews=stores.previews,
            languages=stores.languages,
            users=UserDirectory(stores.union_ids, per_organization=self.policy.per_organization),
            user_tokens=self.user_tokens,
            connector=self.connector,
            presses=self.presses,
        )

    def _with_user_tokens(self, config: Config) -> None:
        sealer = Sealer(config.secret_key)
        self.user_tokens = UserTokens(self.stores.tokens, self.stores.user_grants, sealer, self.dingtalk)
        self.authorizer = UserAuthorizer(self.authorizer, self.user_tokens)
        self.connector = Connector(config, self.stores.user_grants, sealer, self.user_tokens, self.dingtalk)
        self.oauth = OAuthServer(self.connector, config.port, config.locale, self.intake.accept)

    async def run(self) -> None:
        """Serve until shutdown(). If the Stream loop or the heartbeat ends before that, log it and raise
        VitalTaskEnded: a process that stays up deaf is never restarted by its dyno manager."""
        await self._open()
        stream = asyncio.create_task(self.stream.run())
        heartbeat = asyncio.create_task(self._heartbeat())
        watching = self.policy.relieved_watcher(self.stores)
        watcher = asyncio.create_task(watching.run()) if watching is not None else None
        vital = {stream: "stream loop", heartbeat: "heartbeat"}
        done, _ = await asyncio.wait(vital, return_when=asyncio.FIRST_COMPLETED)
        if not self._shutting_down:
            ended = done.pop()
            error = None if ended.cancelled() else ended.exception()
            fields = {"task": vital[ended], "error": type(error).__name__ if error else "returned"}
            log.error("watchdog: a vital task ended, exiting", extra={"fields": fields}, exc_info=error)
            raise VitalTaskEnded(vital[ended])
        heartbeat.cancel()
        if watcher is not None:
            watcher.cancel()
        await stream

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking messages, finish those already accepted (their cards sent), then close the HTTP client."""
        self._shutting_down = True
        await self.stream.stop()
        if self.oauth is not None:
            await self.oauth.stop()
        unfinished, _ = await asyncio.gather(self.inbox.drain(grace_seconds), self.busy.sent(grace_seconds))
        if unfinished:
            fields = {"unfinished": unfinished}
            log.error(
                "shutdown left messages unfinished: the journal keeps them for the next start", extra={"fields": fields}
            )
        log.info("stopped", extra={"fields": self.telemetry.snapshot()})
        await self.stores.close_background_writes()
        await self.intake.close()
        await self.dingtalk.aclose()
        await self.stores.close()

    async def _open(self) -> None:
        """The stores, the inbox's workers, the journal's unfinished messages and the OAuth redirect, in that order."""
        try:
            await self.stores.open()
        except StateUnavailable as unavailable:
            log.error("the bot's state cannot be kept, exiting", extra={"fields": {"problem": str(unavailable)}})
            raise VitalTaskEnded("state") from None
        self.inbox.start()
        await self.intake.open(self.inbox.accept)
        if self.oauth is None:
            return
        try:
            await self.oauth.start()
        except OSError as unbound:
            log.error("the OAuth redirect cannot be served, exiting", extra={"fields": {"problem": str(unbound)}})
            raise VitalTaskEnded("web server") from None
        if self.config.dyno.startswith("worker."):  # app.json starts the worker; its port is nobody's
            fix = "heroku ps:scale worker=0 web=1 (or, with REDIS_URL, web=1 beside the workers)"
            log.warning(
                "this worker dyno's OAuth port is not reachable: Heroku routes $PORT to web dynos only, so "
                "users' consent needs a web dyno",
                extra={"fields": {"dyno": self.config.dyno, "fix": fix}},
            )

    async def _heartbeat(self) -> None:
        async for _ in self.telemetry.beats(self.config.heartbeat_seconds):
            if self.config.fault == "heartbeat-ends":
                return
            if self.config.fault == "stream-loop-ends":
                await self.stream.stop()

    def _counted_elsewhere(self) -> dict[str, int]:
        """The counts that other parts keep: repeats dropped, reconnects, DingTalk calls by API."""
        counts = {f"api:{api}": calls for api, calls in self.dingtalk.calls.items()}
        counts["duplicates"] = self.repeats.dropped
        counts["reconnects"] = self.stream.reconnects
        counts["failed_connections"] = self.stream.failed_connections
        return counts
