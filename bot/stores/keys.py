"""Every store key, made here from the tenant and the concern: the row keys of the stores and the Redis keys
(`calbot:{client id}:{concern}:{row key}`); nothing else spells one."""

from __future__ import annotations

import re

from bot.models import Tenant

APP_TOKEN = "app"  # noqa: S105 - the token cache key of the app's own token, not a secret
ORGANIZATION_TOKEN = "org:"  # noqa: S105 - token cache keys of organizations' tokens (an ISV app)
USER_TOKEN = "user:"  # noqa: S105 - token cache keys of users' own tokens (BOT_CALENDAR_TOKEN=user)
PENDING_CONNECT = "pending:"  # user grants key of the command waiting for a user's consent (one per user)
_GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")


def of_organization(corp_id: str) -> str:
    """What every row key of an organization's tenants starts with."""
    return Tenant(corp_id, "").key


def organization_token(corp_id: str) -> str:
    return f"{ORGANIZATION_TOKEN}{corp_id}"


def user_token(user: str) -> str:
    """The token cache key of a user's own token; `user` is their tenant key."""
    return f"{USER_TOKEN}{user}"


def pending_connect(user: str) -> str:
    return f"{PENDING_CONNECT}{user}"


def union_id(tenant: Tenant, per_organization: bool) -> str:
    """A staff id is unique only within its organization: an app serving many keys unionIds by organization too."""
    return tenant.key if per_organization else tenant.staff_id


def api(scope: str, name: str) -> str:
    """Whose per-API window a call counts in: the app's, or an organization's (`scope`) in an ISV app."""
    return f"{scope}/{name}" if scope else name


def token_of_organization(key: str, corp_id: str) -> bool:
    """Whether a token cache key is the organization's own token or one of its users'."""
    return key == organization_token(corp_id) or key.startswith(user_token(of_organization(corp_id)))


def grant_of_organization(key: str, corp_id: str) -> bool:
    """Whether a user grants key is one of the organization's users' grants or pending connects."""
    tenants = of_organization(corp_id)
    return key.startswith(tenants) or key.startswith(pending_connect(tenants))


def glob_literal(text: str) -> str:
    """`text` matched literally in a Redis MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\g<0>", text)


class KeyBuilder:
    """The Redis keys of one app (its client id): `calbot:{client id}:{concern}:{row key}` (aiogram's KeyBuilder)."""

    def __init__(self, client_id: str) -> None:
        self.prefix = f"calbot:{client_id}:"

    def __call__(self, concern: str, row: str = "") -> str:
        return f"{self.prefix}{concern}:{row}"

    def concern(self, concern: str) -> str:
        """What every key of the concern starts with."""
        return f"{self.prefix}{concern}:"

    def pattern(self, concern: str, row_prefix: str) -> str:
        """A SCAN pattern for the concern's keys whose row key starts with `row_prefix` (matched literally)."""
        return f"{glob_literal(self(concern, row_prefix))}*"

    def single(self, name: str) -> str:
        """A key of the app that no concern shares (the Stream of the journal, the removals lately)."""
        return f"{self.prefix}{name}"
