"""One-shot messages after a dashboard action: "Muted mood alerts for Alice for 60 min", or why nothing was done.

An action answers with a redirect, so its message rides to the next page in a short-lived signed
cookie, which that page deletes as it shows it: a reload or a later visit does not show it again.
The cookie carries an i18n key and its parameters, never text, so the words always come from the
table and the template escapes the parameters like any other value.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Callable

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from bot.web.i18n import STRINGS

COOKIE = "moodbot_flash"
MAX_AGE_S = 60  # long enough for the redirect; a message left unread must not turn up on a later visit
MAX_PARAM_CHARS = 80  # a contact's name can be long, and a cookie holds only 4 KB


def _fields(key: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(STRINGS[key][0]) if field}


@dataclass(frozen=True)
class Flash:
    text: str
    error: bool


class Flashes:
    def __init__(self, secret: str, secure: bool) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="moodbot-dashboard-flash")
        self._secure = secure

    def set(self, response: Response, key: str, *, error: bool = False, **params: str | int) -> None:
        short = {name: value[:MAX_PARAM_CHARS] if isinstance(value, str) else value for name, value in params.items()}
        value = self._signer.dumps({"k": key, "e": error, "p": short})
        response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, path="/", httponly=True, samesite="strict",
                            secure=self._secure)

    def read(self, request: Request, t: Callable[..., str]) -> Flash | None:
        """The pending message in the dashboard's language; None without one, or with one no longer valid."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=MAX_AGE_S)
            key, params = str(data["k"]), dict(data["p"])
            # only the table's flash messages with exactly their parameters: a cookie from an older version
            # would otherwise show a bare key or an unfilled {name}
            if not key.startswith("flash_") or key not in STRINGS or set(params) != _fields(key):
                return None
            return Flash(t(key, **params), bool(data["e"]))
        except (BadSignature, KeyError, IndexError, TypeError, ValueError):  # also SignatureExpired, a changed format
            return None

    def clear(self, request: Request, response: Response) -> None:
        if COOKIE in request.cookies:
            response.delete_cookie(COOKIE, path="/", secure=self._secure, httponly=True, samesite="strict")
