"""What a callback POST must pass before it is parsed: its size, WeChat's time window, the replay memory.

A WeChat signature covers the token, the timestamp and the nonce (in safe mode the ciphertext
too), never the time it is used: without these checks, whoever saw one signed request (in a proxy
log, say) could send it again forever, and in plaintext mode with any body, as anyone. So a
request is taken only within WINDOW_S of this server's clock, and a (timestamp, nonce) pair only
with the body it first came with. The same request again may be WeChat's own retry: it passes
here, and the MsgId rule (callback.py) answers it without processing it twice.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import AsyncIterator, Callable, Mapping

from bot.text import whole_number

MAX_BODY = 256 * 1024  # WeChat's messages are a few kB; anything this big is not from WeChat
WINDOW_S = 300  # WeChat's requests are stamped when sent; five minutes covers a slow network and some clock drift
MAX_PAIRS = 50_000  # about 170 signed requests a second for the whole window; only signed requests are kept


class Forbidden(Exception):
    """A callback whose signature, ciphertext, time or fields do not check out: answered 403, never processed."""


class TooLarge(Exception):
    """A body over the limit: answered 413."""


async def read_limited(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, refused by its Content-Length or as soon as the bytes read pass `limit`."""
    if declared is not None and ((size := whole_number(declared)) is None or size > limit):
        raise TooLarge(f"Content-Length {declared[:20]}")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"more than {limit} bytes")
    return bytes(body)


class ReplayGuard:
    """The time window and the (timestamp, nonce) pairs seen within it; memory is bounded."""

    def __init__(self, window_s: float = WINDOW_S, max_pairs: int = MAX_PAIRS,
                 clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.max_pairs = max_pairs
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()  # -> (expires, body digest)

    def check_time(self, query: Mapping[str, str]) -> int:
        """The request's timestamp, if it is within the window of this server's clock."""
        stamp = whole_number(query.get("timestamp", ""), 12)
        if stamp is None:
            raise Forbidden("no usable timestamp")
        skew = self.clock() - stamp
        if abs(skew) > self.window_s:
            raise Forbidden(f"timestamp {skew:+.0f} s from this server's clock, outside ±{self.window_s:.0f} s: "
                            "a replayed request, or this host's clock is wrong")
        return stamp

    def remember(self, query: Mapping[str, str], body: bytes) -> None:
        """Take a verified request's pair; the pair again with another body is a forgery."""
        stamp = self.check_time(query)  # again: the body may have taken a while to arrive
        pair = (query.get("timestamp", ""), query.get("nonce", ""))
        digest = hashlib.sha256(body).digest()
        now = self.clock()
        # a pair can be forgotten once its timestamp is outside the window: the time check refuses it then
        while self._seen and next(iter(self._seen.values()))[0] < now:
            self._seen.popitem(last=False)
        seen = self._seen.get(pair)
        if seen is not None:
            if seen[1] != digest:
                raise Forbidden("timestamp and nonce already used with another body (a replay)")
            return
        self._seen[pair] = (stamp + self.window_s, digest)
        if len(self._seen) > self.max_pairs:
            self._seen.popitem(last=False)
