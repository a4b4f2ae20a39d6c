"""Shared by the dashboard tests: settings with a password, an app over a store, a logged-in client."""

from __future__ import annotations

import re
from typing import Any

import httpx

from bot.clock import Clock
from bot.config import Settings
from bot.state import BotState
from bot.store import Store

PASSWORD = "correct horse battery"


def dashboard_settings(**dashboard: Any) -> Settings:
    return Settings.model_validate({"schedule": {"enabled": False}, "admin": {"ids": ["boss"]},
                                    "dashboard": {"password": PASSWORD, **dashboard}})


def make_web_app(store: Store, clock: Clock, settings: Settings | None = None, state: BotState | None = None) -> Any:
    from bot.web.app import create_app

    settings = settings or dashboard_settings()
    return create_app(settings, store, state or BotState(clock.now(), "test", flags=store), clock)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def page_token(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "no CSRF meta tag in the page"
    return found.group(1)


async def login(client: httpx.AsyncClient, password: str = PASSWORD, name: str = "sue") -> httpx.Response:
    token = form_token((await client.get("/login")).text)
    return await client.post("/login", data={"csrf": token, "name": name, "password": password, "next": "/"})


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
