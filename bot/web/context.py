"""What every dashboard route shares: the services, the session check, templates and the page context."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

from bot.clock import Clock
from bot.config import Settings
from bot.domain import muted_minutes
from bot.state import BotState
from bot.store import Store
from bot.web.auth import LoginLimiter, Session, Sessions
from bot.web.flash import Flashes
from bot.web.i18n import translator
from bot.web.queries import Queries

HERE = Path(__file__).resolve().parent


def safe_next(value: str | None, default: str = "/") -> str:
    """Only a path on this site: an open redirect would turn the login form into a phishing aid."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


class LoginRequired(Exception):
    """No valid session: a page redirects to the login form, anything else answers 401."""


@dataclass
class Dashboard:
    settings: Settings
    store: Store
    state: BotState  # in-process: the running app's; standalone: one over the store's pause flag
    clock: Clock
    sessions: Sessions
    limiter: LoginLimiter
    check_password: Callable[[str], bool]
    queries: Queries
    templates: Jinja2Templates
    t: Callable[..., str]
    flashes: Flashes
    stopping: threading.Event = field(default_factory=threading.Event)  # set on shutdown: live streams end

    @property
    def tz(self) -> tzinfo | None:
        return self.queries.tz

    def session(self, request: Request) -> Session:
        session = self.sessions.read(request.cookies.get(Sessions.cookie))
        if session is None:
            raise LoginRequired()
        return session

    def render(self, request: Request, template: str, session: Session | None, status_code: int = 200, **values: Any) -> Response:
        context = {"t": self.t, "lang": self.settings.dashboard.language, "session": session,
                   "csrf": session.csrf if session else "", "paused": self.state.paused, "tz": self.tz,
                   "flash": self.flashes.read(request, self.t), **values}
        response: Response = self.templates.TemplateResponse(request, template, context, status_code=status_code)
        self.flashes.clear(request, response)  # shown once: a reload does not repeat it
        return response


def make_templates(tz: tzinfo | None) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.autoescape = True  # also for the .svg-free fragments rendered for the live stream
    env.filters["muted_minutes"] = muted_minutes  # the audit's "45 min", shown in the dashboard's language
    env.filters["local"] = lambda value, fmt="%m-%d %H:%M": value.astimezone(tz).strftime(fmt) if value else ""
    return templates


def build_dashboard(settings: Settings, store: Store, state: BotState, clock: Clock,
                    check_password: Callable[[str], bool], secret: str) -> Dashboard:
    config = settings.dashboard
    name = settings.schedule.timezone
    tz = ZoneInfo(name) if name else None
    return Dashboard(
        settings=settings, store=store, state=state, clock=clock,
        sessions=Sessions(secret, config.session_minutes * 60, store),
        limiter=LoginLimiter(config.login_attempts, config.login_window_minutes * 60),
        check_password=check_password, queries=Queries(store, tz), templates=make_templates(tz),
        t=translator(config.language), flashes=Flashes(secret, config.secure_cookies),
    )
