"""The dashboard's ASGI app: FastAPI routes, security headers, login and logout.

Every route but the login form and the static files needs a session. Pages without one redirect
to /login; the live stream, the JSON summary and every POST answer 401. Every POST carries a CSRF
token that must match the one signed into the session cookie.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.clock import Clock
from bot.config import Settings
from bot.state import BotState
from bot.store import Store
from bot.web import actions, live, pages
from bot.web.auth import Sessions, require_password
from bot.web.context import HERE, Dashboard, LoginRequired, build_dashboard, safe_next

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"

SECURITY_HEADERS = [
    # no inline script or style anywhere: scripts and CSS are files the app serves itself
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                  b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                  b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Plain ASGI middleware, so the live event stream is passed through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))  # pages show live data and private excerpts
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings, store: Store, state: BotState, clock: Clock) -> FastAPI:
    """The dashboard over `store`; ConfigError when no password is configured."""
    check = require_password(settings.dashboard)
    configured = settings.dashboard.session_secret
    secret = configured.get_secret_value() if configured else secrets.token_urlsafe(32)
    if configured is None:
        log.info("no dashboard.session_secret: sessions last until the dashboard restarts")
    dash = build_dashboard(settings, store, state, clock, check, secret)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # no unauthenticated API docs
    app.state.dashboard = dash
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET" and request.url.path not in live.NON_PAGES:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if request.method == "POST" and request.headers.get("content-type", "").startswith(FORM):
            # a button pressed on a page whose session ended (a restart, a logout elsewhere): back to the
            # login form, which returns to that page; the action itself is not done
            referer = urlsplit(request.headers.get("referer", ""))
            same_site = referer.netloc in ("", request.headers.get("host", ""))
            target = safe_next(referer.path + (f"?{referer.query}" if referer.query else ""), "/") if same_site else "/"
            return RedirectResponse(f"/login?next={quote(target)}&expired=1", status_code=303)
        return JSONResponse({"detail": "login required"}, status_code=401)

    _login_routes(app, dash)
    pages.register(app, dash)
    actions.register(app, dash)
    live.register(app, dash)
    return app


def _login_routes(app: FastAPI, dash: Dashboard) -> None:
    @app.get("/login")
    async def login_form(request: Request, next: str = "/", expired: str = "") -> Response:
        return _login_page(request, dash, safe_next(next), dash.t("session_ended") if expired else None, 200)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        client = _client(request, dash.settings.dashboard.trusted_proxies)
        target = safe_next(str(form.get("next") or "/"))
        wait = dash.limiter.retry_after(client)
        if wait:
            log.warning("login from %s refused: too many failures", client)
            response = _login_page(request, dash, target, dash.t("login_limited", s=int(wait)), 429)
            response.headers["retry-after"] = str(int(wait))
            return response
        if not dash.sessions.login_token_ok(request.cookies.get(Sessions.login_cookie), str(form.get("csrf") or "")):
            return JSONResponse({"detail": "bad or missing CSRF token"}, status_code=403)
        user = str(form.get("name") or "").strip()[:64]
        if not user or not dash.check_password(str(form.get("password") or "")):
            dash.limiter.failed(client)
            log.warning("failed dashboard login from %s as %r", client, user)
            return _login_page(request, dash, target, dash.t("login_failed"), 401)
        dash.limiter.succeeded(client)
        log.info("dashboard login: %s from %s", user, client)
        cookie, _session = dash.sessions.issue(user)
        response = RedirectResponse(target, status_code=303)
        _set_cookie(response, dash, Sessions.cookie, cookie, int(dash.sessions.max_age_s))
        response.delete_cookie(Sessions.login_cookie, path="/login")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session, _ = await actions.checked(request, dash)
        await asyncio.to_thread(dash.sessions.end, session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(Sessions.cookie, path="/")
        return response


def _set_cookie(response: Response, dash: Dashboard, name: str, value: str, max_age: int, path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                        secure=dash.settings.dashboard.secure_cookies)


def _client(request: Request, trusted: list[str]) -> str:
    """The address to rate-limit: behind a trusted proxy, the one that proxy appended to X-Forwarded-For
    (the last entry: the earlier ones are whatever the browser sent)."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for", "")
    if peer in trusted and forwarded.strip():
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


def _login_page(request: Request, dash: Dashboard, target: str, error: str | None, status: int) -> Response:
    cookie, token = dash.sessions.login_token()
    response = dash.render(request, "login.html", None, status_code=status, next=target, login_csrf=token, error=error)
    _set_cookie(response, dash, Sessions.login_cookie, cookie, 3600, path="/login")
    return response
