"""Ids shaped as DingTalk makes them, so what the bot keeps of them has its real size."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import time
import uuid


def staff_id_of(number: int) -> str:
    """The `number`th staff id, as long as DingTalk's generated userids (16 digits; "0147xxxx8602" masked in the
    receive-message doc, [KB] 0718): caches keyed by staff id then hold what they hold in production."""
    return f"0147{number:08d}8602"


def union_id_of(number: int) -> str:
    """The `number`th unionId, shaped like DingTalk's (26 characters, e.g. "z21HjQliSzpw0YWCOCHPQAiEiE" in the
    topapi/v2/user/get doc, [KB] 0056)."""
    return opaque(f"union{number}", 22) + "iEiE"


def opaque(seed: str, length: int) -> str:
    """`length` base64 characters derived from seed: DingTalk's ids are opaque base64-looking strings."""
    digest = hashlib.blake2b(seed.encode(), digest_size=48).digest()
    return base64.b64encode(digest).decode()[:length]


def base64_id(prefix: str, size: int = 16) -> str:
    """A random id like DingTalk's msgId ("msgrK2xxxxU+riw==") or conversationId ("cid6EUxxxxsg=="): a prefix and
    `size` random bytes in base64, padding included ([KB] 0718's examples)."""
    return prefix + base64.b64encode(uuid.uuid4().bytes + os.urandom(size - 16)).decode()


def frame_message_id() -> str:
    """A Stream frame's messageId as DingTalk writes it ("212ca9d7_974_1898c159aa6_1783b", [PEDIA] protocol.md)."""
    return f"{uuid.uuid4().hex[:8]}_{random.randrange(4096):x}_{int(time.time() * 1000):x}_{uuid.uuid4().hex[:5]}"  # noqa: S311


def topapi_request_id() -> str:
    """topapi's request_id: 12 lowercase letters and digits ("4e7exhl6pm0t" in [KB] 0056)."""
    return uuid.uuid4().hex[:12]


def acs_request_id() -> str:
    """The new-style API's request id: an upper-case UUID ("30EE8654-…" in satorijs/satori#240, reference §4.1)."""
    return str(uuid.uuid4()).upper()
