"""Remember recently handled message ids for a while, bounded in memory, so no message is handled twice."""

from __future__ import annotations

import time
from array import array

REMEMBER_SECONDS = 600.0
MAX_REMEMBERED = (
    200_000  # at most 6.4 MB (32 bytes an id at worst); a burst larger than this within ten minutes is implausible
)
_FIRST_SLOTS = 1024
_FINGERPRINT = 2**64 - 1


class _Fingerprints:
    """A set of 64-bit fingerprints in one flat array (open addressing, linear probing), at most half full: 16 to 32
    bytes an id, where a set of strings costs about 140 (the string and its slot) and keeps the string alive."""

    __slots__ = ("_mask", "_slots", "count")

    def __init__(self, slots: int = _FIRST_SLOTS) -> None:
        self._slots = array("Q", bytes(8 * slots))
        self._mask = slots - 1
        self.count = 0

    def __contains__(self, fingerprint: int) -> bool:
        return self._slots[self._find(fingerprint)] != 0

    @property
    def slots(self) -> int:
        return len(self._slots)

    def add(self, fingerprint: int) -> bool:
        """True if it was not there yet."""
        index = self._find(fingerprint)
        if self._slots[index]:
            return False
        self._slots[index] = fingerprint
        self.count += 1
        if 2 * self.count > self._mask:  # more than half full: probes stay short
            self._grow()
        return True

    def _find(self, fingerprint: int) -> int:
        """The slot holding the fingerprint, else the empty slot where it would go."""
        slots, mask = self._slots, self._mask
        index = fingerprint & mask
        while (held := slots[index]) and held != fingerprint:
            index = (index + 1) & mask
        return index

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = 2 * len(old) - 1
        for fingerprint in old:
            if fingerprint:
                self._slots[self._find(fingerprint)] = fingerprint


def _fingerprint(key: str) -> int:
    """64 bits of the key's hash, never 0 (an empty slot). str hashes are SipHash keyed at random per process, so
    nobody can choose ids that collide; two of 200,000 ids share a fingerprint with a chance of about 1 in 10^9."""
    return (hash(key) & _FINGERPRINT) or 1


class RecentIds:
    """A set of ids that remembers each one for at least `ttl` seconds (and at most twice that), and never more than
    `capacity` at once: two generations of ids, the older one forgotten whole. Ids are kept as fingerprints, not
    strings: memory per id does not depend on how long DingTalk makes its ids."""

    def __init__(self, ttl: float = REMEMBER_SECONDS, capacity: int = MAX_REMEMBERED) -> None:
        self._ttl = ttl
        self._generation_size = max(1, capacity // 2)
        self._current = _Fingerprints()
        self._previous = _Fingerprints(1)
        self._next_generation_at = time.monotonic() + ttl

    def __len__(self) -> int:
        return self._current.count + self._previous.count

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        fingerprint = _fingerprint(key)
        return fingerprint in self._current or fingerprint in self._previous

    def claim(self, key: str) -> bool:
        """True the first time a key is seen within the ttl, False for every repeat."""
        now = time.monotonic()
        if now >= self._next_generation_at or self._current.count >= self._generation_size:
            stale = now >= self._next_generation_at + self._ttl  # nothing claimed for a whole generation
            # the new generation starts as large as the last one grew: a steady flow never waits for a regrowth
            slots = _FIRST_SLOTS if stale else self._current.slots
            self._previous, self._current = (_Fingerprints(1) if stale else self._current), _Fingerprints(slots)
            self._next_generation_at = now + self._ttl
        fingerprint = _fingerprint(key)
        return fingerprint not in self._previous and self._current.add(fingerprint)
