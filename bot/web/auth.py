"""Login for the dashboard: the password check, signed session cookies, CSRF tokens, a login rate limit.

There is no default password: `require_password` refuses to go on without one. A session is a
cookie signed with itsdangerous that carries the supervisor's name and a CSRF token, and the
signature's timestamp gives the expiry. The server keeps only the sessions ended by a logout, until
they would have expired, so that a copied cookie stops working at logout; they are kept in the store,
so a restart does not bring them back (another dashboard process on the same database learns of them
when it starts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

from itsdangerous import BadSignature, URLSafeTimedSerializer

from bot.config import DashboardSettings
from bot.errors import ConfigError

HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
MIN_PASSWORD_CHARS = 8


def hash_password(password: str, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"{HASH_SCHEME}${iterations}${b64(salt)}${b64(digest)}"


def _check_hash(password: str, encoded: str) -> bool:
    scheme, iterations, salt, digest = encoded.split("$")
    if scheme != HASH_SCHEME:
        raise ValueError(f"unknown password hash scheme {scheme!r}")
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(got, base64.b64decode(digest))


def require_password(settings: DashboardSettings) -> Callable[[str], bool]:
    """A checker for the configured password or hash; ConfigError when neither is usable."""
    if settings.password_hash:
        try:
            _check_hash("", settings.password_hash)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"dashboard.password_hash is not a {HASH_SCHEME}$iterations$salt$hash value: {exc}") from None
        encoded = settings.password_hash
        return lambda given: _check_hash(given, encoded)
    plain = settings.password.get_secret_value() if settings.password else ""
    if not plain:
        raise ConfigError(
            "the dashboard needs a password: set MOODBOT__DASHBOARD__PASSWORD, or dashboard.password_hash "
            "from `python -m bot dashboard --hash-password`"
        )
    if len(plain) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"dashboard.password is too short: use at least {MIN_PASSWORD_CHARS} characters")
    wanted = hashlib.sha256(plain.encode()).digest()
    # compare digests of equal length, in constant time
    return lambda given: hmac.compare_digest(hashlib.sha256(given.encode()).digest(), wanted)


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str


class EndedSessions(Protocol):
    """Where logouts outlive the process (bot.store.Store)."""

    def end_session(self, token_digest: str, until: datetime) -> None: ...

    def ended_sessions(self, now: datetime) -> dict[str, datetime]: ...


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.fromtimestamp(time.time(), timezone.utc)  # itsdangerous' clock, so expiry agrees


class Sessions:
    """Signed, expiring session cookies; the CSRF token rides inside the signed payload."""

    cookie = "moodbot_session"
    login_cookie = "moodbot_login"  # a pre-session token, so that the login form has a CSRF check too

    def __init__(self, secret: str, max_age_s: float, kept: EndedSessions | None = None) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="moodbot-dashboard-session")
        self._login_signer = URLSafeTimedSerializer(secret, salt="moodbot-dashboard-login")
        self.max_age_s = max_age_s
        self._kept = kept
        # a digest of the CSRF token of each session ended by logout -> when its cookie expires anyway
        self._ended: dict[str, datetime] = kept.ended_sessions(_now()) if kept is not None else {}

    def issue(self, user: str) -> tuple[str, Session]:
        session = Session(user, secrets.token_urlsafe(24))
        return self._signer.dumps({"u": session.user, "c": session.csrf}), session

    def read(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=int(self.max_age_s))
        except BadSignature:  # also SignatureExpired
            return None
        if _digest(str(data["c"])) in self._ended:
            return None
        return Session(str(data["u"]), str(data["c"]))

    def end(self, session: Session) -> None:
        """Logout: this session's cookie is refused from now on, even if a copy of it was kept, and
        after a restart too. Writes to the store: call it off the event loop."""
        now = _now()
        until = now + timedelta(seconds=self.max_age_s)
        digest = _digest(session.csrf)
        self._ended = {token: expiry for token, expiry in self._ended.items() if expiry > now}
        self._ended[digest] = until
        if self._kept is not None:
            self._kept.end_session(digest, until)

    def login_token(self) -> tuple[str, str]:
        """(cookie value, form token) for the login form."""
        token = secrets.token_urlsafe(24)
        return self._login_signer.dumps(token), token

    def login_token_ok(self, cookie: str | None, form_token: str) -> bool:
        if not cookie or not form_token:
            return False
        try:
            expected = self._login_signer.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return hmac.compare_digest(str(expected), form_token)


def csrf_ok(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf, token or "")


class LoginLimiter:
    """At most `attempts` failed logins per client within `window_s`; then refused until the window passes."""

    def __init__(self, attempts: int, window_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._monotonic = monotonic
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = self._monotonic()
        failures = self._failures.setdefault(client, deque())
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]  # forget quiet clients, so the table cannot grow without bound
            return deque()
        return failures

    def retry_after(self, client: str) -> float:
        """Seconds until this client may try again; 0 when it may now."""
        failures = self._recent(client)
        if len(failures) < self.attempts:
            return 0.0
        return max(1.0, self.window_s - (self._monotonic() - failures[0]))

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, deque()).append(self._monotonic())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
