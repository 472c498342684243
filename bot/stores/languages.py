"""The language each sender last wrote a command in, so a message the bot cannot read is answered in it."""

from __future__ import annotations

from collections import OrderedDict

from bot.stores.keys import of_organization

LANGUAGE_CAPACITY = 20_000  # senders remembered (a few MB); the least recently active are forgotten first


class LastLanguages:
    """sender -> locale of their last understood command, bounded in count."""

    def __init__(self, capacity: int = LANGUAGE_CAPACITY) -> None:
        self._locales: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def of(self, sender: str, default: str) -> str:
        return self._locales.get(sender, default)

    def remember(self, sender: str, locale: str) -> None:
        self._locales[sender] = locale
        self._locales.move_to_end(sender)
        if len(self._locales) > self._capacity:
            self._locales.popitem(last=False)

    async def forget_organization(self, corp_id: str) -> int:
        """Drop what the organization's senders wrote in (sender keys are tenant keys); how many."""
        gone = [sender for sender in self._locales if sender.startswith(of_organization(corp_id))]
        for sender in gone:
            del self._locales[sender]
        return len(gone)
