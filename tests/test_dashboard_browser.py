"""The dashboard in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium).

One walk through a supervisor's day: log in, an alert raised by the pipeline appears live, acknowledge
it, mute the contact, read the contact's chart, pause and resume, log out. Screenshots of every page
go to tests/artifacts/dashboard/ (ignored by git). Without Chromium the tests are skipped, unless
MOODBOT_REQUIRE_BROWSER is set (CI sets it): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from bot.clock import SystemClock
from bot.domain import Alert
from bot.store import Store
from tests.dashboard_helpers import PASSWORD, dashboard_settings
from tests.fakes import build_app, make_message

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MOODBOT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "dashboard"


def _browser_or_skip() -> Any:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed (pip install playwright; no browser download needed)"
    if reason is None and not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if reason:
        if os.environ.get("MOODBOT_REQUIRE_BROWSER"):
            pytest.fail(f"MOODBOT_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    return sync_playwright


class ServerThread:
    """The dashboard app under uvicorn on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app

        from bot.web.server import bind

        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            threading.Event().wait(0.01)
        raise RuntimeError("the dashboard did not start")

    def __exit__(self, *exc: object) -> None:
        self.app.state.dashboard.stopping.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def chromium() -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start;
        # --disable-dev-shm-usage: containers often have a tiny /dev/shm, which crashes tabs
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()
    print(f"\ndashboard screenshots in {ARTIFACTS}")


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_supervisor_walks_through_the_dashboard(chromium: Any, tmp_path: Path) -> None:
    from bot.web.app import create_app

    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    clock = SystemClock()
    bot, _sender = build_app(clock, store)  # the running bot: fake engine, the real pipeline
    settings = dashboard_settings(live_poll_s=0.2)
    web = create_app(settings, store, bot.state, clock)  # in-process: the bot's own pause state
    errors: list[str] = []
    with ServerThread(web) as server:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        # 1. log in
        page.goto(server.url + "/alerts")
        assert "/login" in page.url
        shot(page, "1-login")
        page.fill("#name", "Sue")
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_url(server.url + "/alerts")
        assert page.locator("header .user").inner_text() == "Sue"

        # 2. the pipeline raises an alert; it appears live, with the count in the title
        page.evaluate("window.__noReload = true")
        assert page.locator("#open-alerts tr").count() == 0

        async def three_negatives() -> None:
            for text in ("I feel sad", "everything is awful", "so sad today"):
                await bot.process(make_message(text, sender_id="carol", chat_id="carol", sender_name="Carol",
                                               sent_at=datetime.now(timezone.utc)))

        # Playwright's sync API holds this thread's event loop: the bot runs its turns in a thread of its own
        worker = threading.Thread(target=lambda: asyncio.run(three_negatives()))
        worker.start()
        worker.join(timeout=30)
        assert len(store.open_alerts()) == 1
        row = page.locator("#open-alerts tr[data-alert-id]")
        row.wait_for(timeout=10_000)
        assert "Carol" in row.inner_text() and "sad" in row.inner_text()
        page.wait_for_function("document.title.startsWith('(1) ')", timeout=5_000)
        assert page.evaluate("window.__noReload") is True  # no reload happened
        shot(page, "2-alert-live")

        # 3. acknowledge it: it leaves the open queue
        row.locator("button.ack").click()
        page.wait_for_url(server.url + "/alerts")
        assert page.locator("#open-alerts tr").count() == 0
        assert "Carol" in page.locator("#acked-alerts").inner_text() and "by Sue" in page.locator("#acked-alerts").inner_text()
        assert store.open_alerts() == []
        page.wait_for_function("!document.title.startsWith('(')", timeout=5_000)
        shot(page, "3-alerts-queue")

        # an alert acknowledged elsewhere (#ack in chat, another supervisor) leaves the open list live
        other = store.create_alert(Alert("dave", "dave", "warning", "3 negative messages", ("meh",), ("negative",) * 3,
                                         datetime.now(timezone.utc), "Dave"))
        page.locator(f'#open-alerts tr[data-alert-id="{other}"]').wait_for(timeout=10_000)
        assert store.ack(other, datetime.now(timezone.utc))
        page.locator(f'#open-alerts tr[data-alert-id="{other}"]').wait_for(state="detached", timeout=10_000)
        page.reload()  # the page's list of shown alerts now starts empty again

        # 4. mute the contact from the contact page; 5. see its chart
        page.click("#acked-alerts a:has-text('Carol')")
        page.wait_for_url("**/contact/carol")
        # a bad number of minutes (past the field's own check, as an older browser lets it through) comes back
        # as a message on the same page, not an error page
        page.evaluate("document.querySelector('form.mute').noValidate = true")
        page.fill(".mute input[name=minutes]", "0")
        page.click(".mute button")
        page.wait_for_url("**/contact/carol")
        assert page.locator("#flash[role=alert]").is_visible()
        assert "whole number from 1 to 43200, not \u201c0\u201d" in page.locator("#flash").inner_text()
        assert store.state("carol").muted_until is None and page.locator(".muted-state").count() == 0
        shot(page, "4-bad-minutes")
        page.fill(".mute input[name=minutes]", "45")
        page.click(".mute button")
        page.wait_for_url("**/contact/carol")
        assert page.locator("#flash[role=status]").inner_text() == "Muted mood alerts for Carol for 45 min. Crisis alerts still come."
        assert "muted until" in page.locator(".muted-state").inner_text()
        assert store.state("carol").muted_until is not None
        assert page.locator("#timeline svg circle").count() == 3
        assert page.locator("#timeline svg polyline.trend").count() == 1
        assert page.locator("#messages tr").count() == 3
        shot(page, "4-contact")

        # pause and resume auto-replies from the alerts page; the running bot sees it at once
        page.goto(server.url + "/alerts")
        page.click("#pause")
        page.wait_for_selector("#resume")
        assert bot.state.paused
        page.click("#resume")
        page.wait_for_selector("#pause")
        assert not bot.state.paused
        assert "Carol" in page.locator("#muted").inner_text()

        page.goto(server.url + "/")
        assert page.locator(".tile .big").first.inner_text() == "3"
        assert page.locator("svg.chart rect").count() >= 1
        shot(page, "5-overview")

        # 6. log out: pages are closed again
        page.click("#logout")
        page.wait_for_url("**/login")
        page.goto(server.url + "/")
        assert "/login" in page.url
        shot(page, "6-logged-out")
    assert not errors, errors  # no CSP violations or script errors in the console
    store.close()


def test_readme_screenshots(chromium: Any, tmp_path: Path) -> None:
    """Overview and alerts queue over a realistic store (the benchmark's data), for docs/."""
    from bench.dashboard import fill
    from bot.state import BotState
    from bot.web.app import create_app

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    clock = SystemClock()
    fill(store, contacts_n=60, points_n=3000, alerts_n=12, now=clock.now(), days=16)
    web = create_app(dashboard_settings(), store, BotState(clock.now(), "demo", flags=store), clock)
    with ServerThread(web) as server:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url + "/login")
        page.fill("#name", "Sue")
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_url(server.url + "/")
        page.screenshot(path=str(ARTIFACTS / "readme-overview.png"), full_page=True)
        page.goto(server.url + "/alerts")
        page.screenshot(path=str(ARTIFACTS / "readme-alerts.png"))
    store.close()
