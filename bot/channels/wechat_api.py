"""A small async client for WeChat's server APIs (Official Account and WeCom): token, text sends.

The access token is fetched once, cached until shortly before it expires and fetched again when
the API says it is invalid or expired (40001, 40014, 42001), then the call is repeated once.
Rate limits (45009, 45047) are retried here with exponential backoff, so the message is not lost.
A closed 48-hour customer-service window (45015) is final for now: it raises WindowClosed, which
the outbound component does not retry. HTTP errors (5xx) and network errors raise WeChatHTTPError
for the outbound retries; it names the API path only, because the URL's query carries the
AppSecret or the access token and httpx's own errors quote the whole URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

import httpx

from bot.errors import MoodbotError, SendRefused

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, and WeChat's URLs carry the AppSecret (token requests) and
# the access token (every call): keep those out of the log
logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))

TOKEN_INVALID = frozenset({40001, 40014, 42001})
RATE_LIMITED = frozenset({45009, 45047})
WINDOW_CLOSED = 45015


class WeChatAPIError(MoodbotError):
    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(f"WeChat API {path} answered errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatHTTPError(MoodbotError):
    """An HTTP error status or a network failure, named without the URL (whose query holds secrets)."""

    def __init__(self, path: str, status: int | None, reason: str = "") -> None:
        what = f"HTTP {status}" if status is not None else reason
        super().__init__(f"WeChat API {path} failed: {what}")
        self.path = path
        self.status = status


class WindowClosed(WeChatAPIError, SendRefused):
    """45015: the user has not written to the account within 48 hours, so it may not write to them."""


class WeChatAPI:
    """`token_path` and `token_params` name how this dialect gets its token; secrets never reach the log."""

    def __init__(
        self,
        base_url: str,
        token_path: str,
        token_params: dict[str, str],
        timeout_s: float = 10.0,
        rate_limit_retries: int = 5,
        rate_limit_wait_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_path = token_path
        self._token_params = token_params
        self.rate_limit_retries = rate_limit_retries
        self.rate_limit_wait_s = rate_limit_wait_s
        self.sleep = sleep
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._token: str | None = None
        self._expires_at = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise WeChatHTTPError(path, None, exc.__class__.__name__) from None
        if response.is_error:
            raise WeChatHTTPError(path, response.status_code)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise WeChatHTTPError(path, None, "an answer that is not a JSON object")
        return data

    async def token(self, stale: str | None = None) -> str:
        """The cached token, fetched when missing or expiring; `stale` is one WeChat just rejected."""
        async with self._token_lock:  # one fetch for many concurrent sends
            # a send that waited here while another refetched must not fetch again: the new token is fine
            rejected = stale is not None and stale == self._token
            if rejected or self._token is None or time.monotonic() >= self._expires_at:
                data = await self._call("GET", self.token_path, params=self._token_params)
                if "access_token" not in data:
                    raise WeChatAPIError(int(data.get("errcode", -1)), str(data.get("errmsg", "")), self.token_path)
                self._token = str(data["access_token"])
                # refresh five minutes early: a token that expires mid-send costs a round trip
                self._expires_at = time.monotonic() + max(60, int(data.get("expires_in", 7200)) - 300)
                self.token_fetches += 1
                log.info("access token fetched from %s (valid %s s)", self.base_url, data.get("expires_in"))
            return self._token

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with the access token; the token and rate-limit rules above apply."""
        # WeChat shows \\u escapes literally: send UTF-8
        body = json.dumps(payload, ensure_ascii=False).encode()
        refreshed = False
        limited = 0
        while True:
            token = await self.token()
            data = await self._call("POST", path, params={"access_token": token}, content=body,
                                    headers={"content-type": "application/json; charset=utf-8"})
            errcode = int(data.get("errcode", 0) or 0)
            if errcode == 0:
                return data
            errmsg = str(data.get("errmsg", ""))
            if errcode in TOKEN_INVALID and not refreshed:
                log.info("access token rejected (errcode %d); fetching a new one", errcode)
                refreshed = True
                await self.token(stale=token)
                continue
            if errcode in RATE_LIMITED and limited < self.rate_limit_retries:
                wait = min(self.rate_limit_wait_s * 2 ** limited, 60.0)
                limited += 1
                log.warning("WeChat rate limit on %s (errcode %d); retry %d in %.1f s", path, errcode, limited, wait)
                await self.sleep(wait)
                continue
            if errcode == WINDOW_CLOSED:
                raise WindowClosed(errcode, errmsg, path)
            raise WeChatAPIError(errcode, errmsg, path)
