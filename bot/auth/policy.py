"""What differs between the two app types, chosen once at start-up: who a message's calls act as, whether keys and
limits are per organization, which robot answers, and what follows the suite's events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.auth.credentials import AppAuthorizer, Authorizer
from bot.auth.isv import IsvAuthorizer, RelievedWatcher, SuiteEvents
from bot.config import Config
from bot.dingtalk.client import DingTalkClient
from bot.stores.build import Stores


class AppPolicy(Protocol):
    @property
    def per_organization(self) -> bool:
        """Many organizations on one Stream (ISV): msgIds, unionIds, limits and audit kept apart per organization."""
        ...

    def robot_code(self, config: Config) -> str | None:
        """The robot a message that names none is answered as; None when every message must name its own."""
        ...

    def authorizer(self, config: Config, stores: Stores, dingtalk: DingTalkClient) -> Authorizer: ...

    def suite_events(self, config: Config, stores: Stores) -> SuiteEvents | None:
        """Who handles the Stream's EVENT pushes (an ISV app's tickets and authorizations); None: nobody needs them."""
        ...

    def relieved_watcher(self, stores: Stores) -> RelievedWatcher | None:
        """Drops this dyno's copies of an organization another dyno saw remove the app; None when none can."""
        ...


@dataclass(frozen=True, slots=True)
class InternalApp:
    """An organization's own app: its one token for every message, its app key as the robot code."""

    per_organization: bool = False

    def robot_code(self, config: Config) -> str | None:
        return config.client_id

    def authorizer(self, config: Config, stores: Stores, dingtalk: DingTalkClient) -> Authorizer:
        return AppAuthorizer(stores.tokens, dingtalk.app_access_token)

    def suite_events(self, config: Config, stores: Stores) -> SuiteEvents | None:
        return None

    def relieved_watcher(self, stores: Stores) -> RelievedWatcher | None:
        return None


@dataclass(frozen=True, slots=True)
class IsvApp:
    """A third-party app many organizations install: each organization's token from the suite ticket, each robot's own
    code (never the suite key), everything kept per organization."""

    per_organization: bool = True

    def robot_code(self, config: Config) -> str | None:
        return None

    def authorizer(self, config: Config, stores: Stores, dingtalk: DingTalkClient) -> Authorizer:
        return IsvAuthorizer(config.client_id, stores.tokens, stores.suite_tickets, dingtalk)

    def suite_events(self, config: Config, stores: Stores) -> SuiteEvents | None:
        return SuiteEvents(config.client_id, stores)

    def relieved_watcher(self, stores: Stores) -> RelievedWatcher | None:
        # with Redis, another dyno may have got an organization's removal
        return RelievedWatcher(stores) if stores.redis is not None else None


def policy_for(config: Config) -> AppPolicy:
    return IsvApp() if config.is_isv else InternalApp()
