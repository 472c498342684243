"""BOT_SECRET_KEY's two uses: signing connect-link states (HMAC) and sealing blobs at rest (AES-GCM), keys by HKDF."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEALED_VERSION = b"\x01"  # first byte of a sealed blob: lets a later key or cipher be introduced
NONCE_BYTES = 12
MAC_BYTES = 16
MAX_STATE_LENGTH = 400  # a longer `state` is not looked at


class Unreadable(Exception):
    """A sealed blob that this key cannot open (another key, another owner, or tampered with)."""


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dingtalk-calendar-bot", info=purpose).derive(
        secret_key.encode()
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class State:
    """What a connect link's `state` says: whose it is, its single-use nonce and when it stops working."""

    user: str
    nonce: str
    expires_at: int


class Sealer:
    """Signs states and seals blobs with keys derived from BOT_SECRET_KEY; each blob is bound to its owner's key."""

    def __init__(self, secret_key: str) -> None:
        self._signing_key = _derive(secret_key, b"connect-state")
        self._cipher = AESGCM(_derive(secret_key, b"user-grants"))

    def seal(self, owner: str, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return SEALED_VERSION + nonce + self._cipher.encrypt(nonce, plaintext, owner.encode())

    def open(self, owner: str, blob: bytes) -> bytes:
        if blob[:1] != SEALED_VERSION or len(blob) < 1 + NONCE_BYTES:
            raise Unreadable
        try:
            return self._cipher.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], owner.encode())
        except InvalidTag:
            raise Unreadable from None

    def sign(self, user: str, seconds: float) -> State:
        """A new state for this user, working for `seconds`."""
        return State(user, secrets.token_urlsafe(16), int(time.time() + seconds))

    def encode(self, state: State) -> str:
        body = f"{_b64(state.user.encode())}.{state.nonce}.{state.expires_at}"
        return f"{body}.{_b64(self._mac(body))}"

    def decode(self, text: str) -> State | None:
        """The state if this key signed it (expired or not), else None."""
        if len(text) > MAX_STATE_LENGTH or text.count(".") != 3:
            return None
        body, _, mac = text.rpartition(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(body)):
                return None
            user, nonce, expires_at = body.split(".")
            return State(_unb64(user).decode(), nonce, int(expires_at))
        except (ValueError, UnicodeDecodeError):
            return None

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._signing_key, body.encode(), hashlib.sha256).digest()[:MAC_BYTES]
