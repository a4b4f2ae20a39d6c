"""Texts a subscription account keeps for a user's next message, since it has no send API.

A kept text goes out in the passive answer to the user's next message. Until then it is not
delivered: the send that kept it raises `Deferred`, so an alert stays pending in the store and the
reminder job sends it again; kept again, it is kept once. Once it has gone out, sending it again
counts as delivered, which lets the reminder job mark the alert delivered.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

log = logging.getLogger(__name__)


def excerpt(text: str, chars: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= chars else line[: chars - 1] + "…"


class HeldTexts:
    def __init__(self, remember: int = 1000) -> None:
        self._held: dict[str, list[str]] = {}
        self._out: OrderedDict[tuple[str, str], None] = OrderedDict()  # (chat, text) that went out: the latest
        self.remember = remember

    def keep(self, chat_id: str, texts: list[str]) -> None:
        kept = self._held.setdefault(chat_id, [])
        new = [text for text in texts if text not in kept]
        kept.extend(new)
        if new:
            log.info("kept %d message(s) for %s until they next write (subscription accounts cannot send)",
                     len(new), chat_id)

    def take(self, chat_id: str) -> list[str]:
        return self._held.pop(chat_id, [])

    def handed_over(self, chat_id: str, texts: list[str], answer: str) -> None:
        """`texts` were taken for a passive answer; those wholly in it went out."""
        for text in texts:
            if text.strip() and text.strip() in answer:
                self._out[(chat_id, text)] = None
                while len(self._out) > self.remember:
                    self._out.popitem(last=False)

    def went_out(self, chat_id: str, text: str) -> bool:
        return (chat_id, text) in self._out

    def lose_all(self) -> None:
        """At shutdown: what is still kept is lost (alerts among it stay pending in the store)."""
        for chat_id, texts in self._held.items():
            for text in texts:
                log.error("stopping: a text kept for %s's next message is lost: %r", chat_id, excerpt(text))
        self._held.clear()
