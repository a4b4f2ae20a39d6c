"""The dashboard without a browser: login, sessions, CSRF, rate limit, escaping, actions, start-up refusal."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute

from bot.__main__ import main
from bot.clock import ManualClock
from bot.config import DashboardSettings, Settings
from bot.domain import Alert, ContactState, Label, MoodPoint
from bot.errors import ConfigError
from bot.state import BotState
from bot.store import Store
from bot.web.auth import LoginLimiter, Sessions, hash_password, require_password
from tests.dashboard_helpers import PASSWORD, client_for, dashboard_settings, form_token, login, make_web_app, page_token

EVIL = "<script>alert(1)</script>"


def seed(store: Store, clock: ManualClock, contact: str = "alice", name: str = "Alice", negatives: int = 3) -> int:
    now = clock.now()
    for i in range(6):  # a good week, then a bad day: the contact trends down
        store.add_mood(MoodPoint(contact, contact, now - timedelta(days=5, hours=i), Label.POSITIVE, 0.9, f"{contact}p{i}",
                                 f"fine {name}", name))
    for i in range(negatives):
        store.add_mood(MoodPoint(contact, contact, now - timedelta(minutes=10 - i), Label.NEGATIVE, 0.9, f"{contact}n{i}",
                                 f"sad {name}", name, text=f"full text {name}"))
    return store.create_alert(Alert(contact, contact, "high", f"3 negative {name}", (f"sad {name}",), ("negative",) * 3,
                                    now, name))


def test_no_password_no_dashboard() -> None:
    with pytest.raises(ConfigError, match="MOODBOT__DASHBOARD__PASSWORD"):
        require_password(DashboardSettings())
    with pytest.raises(ConfigError, match="too short"):
        require_password(DashboardSettings(password="abc"))
    with pytest.raises(ConfigError, match="password_hash"):
        require_password(DashboardSettings(password_hash="nonsense"))
    check = require_password(DashboardSettings(password_hash=hash_password("a long secret", iterations=1000)))
    assert check("a long secret") and not check("a long secreT") and not check("")


def test_the_commands_refuse_to_start_without_a_password(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("MOODBOT__"):
            monkeypatch.delenv(name)
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{data_dir: {tmp_path}}}\ndashboard: {{enabled: true}}\n")
    assert main(["--config", str(config), "dashboard"]) == 2
    assert "needs a password" in capsys.readouterr().err
    # `run` refuses before the model is loaded
    assert main(["--config", str(config), "run"]) == 2
    assert "MOODBOT__DASHBOARD__PASSWORD" in capsys.readouterr().err


def test_password_hash_command(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long secret\n"))
    assert main(["dashboard", "--hash-password"]) == 0
    encoded = capsys.readouterr().out.strip()
    assert require_password(DashboardSettings(password_hash=encoded))("a long secret")


def test_settings_refuse_unknown_dashboard_keys() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings.model_validate({"dashboard": {"passwd": "x"}})
    assert Settings().dashboard.host == "127.0.0.1" and not Settings().dashboard.enabled


async def test_every_route_needs_a_login(store: Store, clock: ManualClock) -> None:
    app = make_web_app(store, clock)
    seed(store, clock)
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path != "/login"]
    assert len(routes) >= 9
    async with client_for(app) as client:
        for route in routes:
            path = route.path.replace("{alert_id}", "1").replace("{contact_id:path}", "alice")
            for method in route.methods:
                response = await client.request(method, path)
                if method == "GET" and path not in ("/events", "/api/summary"):
                    assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
                else:
                    assert response.status_code == 401, (method, path)
                if method == "POST":  # a button pressed on a page whose session ended: to the login form, and back
                    pressed = await client.post(path, data={"csrf": "x", "minutes": "5"},
                                                headers={"referer": "http://127.0.0.1/contact/alice?x=1"})
                    assert pressed.status_code == 303, path
                    assert pressed.headers["location"] == "/login?next=/contact/alice%3Fx%3D1&expired=1", path
    assert len(store.open_alerts()) == 1 and store.flag("paused") is None and store.state("alice").muted_until is None
    async with client_for(app) as client:  # another site's page is not where the login returns to
        pressed = await client.post("/pause", data={"csrf": "x"}, headers={"referer": "https://evil.example/x"})
        assert pressed.headers["location"] == "/login?next=/&expired=1"
        assert "Your session has ended" in (await client.get(pressed.headers["location"])).text


async def test_login_sets_a_strict_http_only_expiring_cookie_and_logout_ends_it(store: Store, clock: ManualClock) -> None:
    settings = dashboard_settings(session_secret="kept across restarts")
    async with client_for(make_web_app(store, clock, settings)) as client:
        response = await login(client)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "moodbot_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Max-Age=28800" in cookie
        page = await client.get("/")
        assert page.status_code == 200 and "sue" in page.text
        kept = client.cookies["moodbot_session"]  # a copy of the cookie, as someone who saw it could keep
        logout = await client.post("/logout", data={"csrf": page_token(page.text)})
        assert logout.status_code == 303 and logout.headers["location"] == "/login"
        assert (await client.get("/")).status_code == 303
        # the server ended the session: the copy no longer works either
        client.cookies.set("moodbot_session", kept)
        assert (await client.get("/")).status_code == 303
        refused = await client.post("/pause", data={"csrf": page_token(page.text)})
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    assert store.flag("paused") is None
    # a restarted dashboard (the same session_secret and database) still refuses the copy
    async with client_for(make_web_app(store, clock, settings)) as client:
        client.cookies.set("moodbot_session", kept)
        assert (await client.get("/")).status_code == 303
        assert (await login(client)).status_code == 303 and (await client.get("/")).status_code == 200


def test_sessions_expire_and_reject_tampering(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions("secret", max_age_s=60)
    cookie, session = sessions.issue("sue")
    assert sessions.read(cookie) == session
    assert sessions.read(cookie[:-2] + "xx") is None
    assert Sessions("other secret", 60).read(cookie) is None
    import time

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)
    assert sessions.read(cookie) is None


async def test_posts_without_a_valid_csrf_token_are_refused(store: Store, clock: ManualClock) -> None:
    alert_id = seed(store, clock)
    async with client_for(make_web_app(store, clock)) as client:
        await login(client)
        for path, data in ((f"/alerts/{alert_id}/ack", {}), ("/pause", {"csrf": "forged"}),
                           ("/contact/alice/mute", {"minutes": "30"}), ("/logout", {})):
            assert (await client.post(path, data=data)).status_code == 403, path
        # the login form has its own token
        assert (await client.post("/login", data={"name": "x", "password": PASSWORD})).status_code == 403
    assert len(store.open_alerts()) == 1 and store.flag("paused") is None and store.state("alice").muted_until is None


async def test_wrong_passwords_are_rate_limited(store: Store, clock: ManualClock) -> None:
    app = make_web_app(store, clock, dashboard_settings(login_attempts=3))
    async with client_for(app) as client:
        for _ in range(3):
            assert (await login(client, password="wrong password")).status_code == 401
        limited = await login(client)  # even the right password now waits
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert "Too many failed logins" in limited.text


async def test_behind_a_trusted_proxy_the_rate_limit_counts_each_browser(store: Store, clock: ManualClock) -> None:
    async def attempt(client: Any, forwarded: str, password: str = "wrong password") -> int:
        token = form_token((await client.get("/login")).text)
        response = await client.post("/login", data={"csrf": token, "name": "x", "password": password},
                                     headers={"x-forwarded-for": forwarded})
        return int(response.status_code)

    trusting = make_web_app(store, clock, dashboard_settings(login_attempts=2, trusted_proxies=["127.0.0.1"]))
    async with client_for(trusting) as client:
        assert [await attempt(client, "10.0.0.1") for _ in range(3)] == [401, 401, 429]
        # another browser behind the same proxy is not locked out; what the browser itself sent is ignored
        assert await attempt(client, "10.0.0.1, 10.0.0.2", PASSWORD) == 303
    untrusting = make_web_app(store, clock, dashboard_settings(login_attempts=2))
    async with client_for(untrusting) as client:  # without trusted_proxies the header is not believed
        assert [await attempt(client, f"10.0.0.{n}") for n in range(3)] == [401, 401, 429]


def test_limiter_window_passes() -> None:
    now = [0.0]
    limiter = LoginLimiter(2, 60, monotonic=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 60 and limiter.retry_after("b") == 0
    now[0] = 61
    assert limiter.retry_after("a") == 0


async def test_security_headers_and_no_inline_script(store: Store, clock: ManualClock) -> None:
    seed(store, clock)
    async with client_for(make_web_app(store, clock)) as client:
        await login(client)
        for path in ("/login", "/", "/alerts", "/contact/alice"):
            response = await client.get(path)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), path  # no inline script
            assert not re.search(r"\son[a-z]+=", response.text), path  # no inline handlers
            assert not re.search(r"\sstyle=|<style", response.text), path
        assert (await client.get("/static/dashboard.js")).status_code == 200


async def test_html_escaping_holds_for_a_hostile_contact_name(store: Store, clock: ManualClock) -> None:
    seed(store, clock, contact="evil", name=EVIL)
    async with client_for(make_web_app(store, clock)) as client:
        await login(client, name=EVIL)
        pages = [await client.get(p) for p in ("/", "/alerts", "/contact/evil")]
        page = await client.get("/alerts")
        await client.post("/pause", data={"csrf": page_token(page.text)})  # the name lands in the audit table
        pages.append(await client.get("/alerts"))
        await client.post("/contact/evil/mute", data={"csrf": page_token(page.text), "next": "/alerts"})
        pages.append(await client.get("/alerts"))  # and in the one-shot message
    for response in pages:
        assert response.status_code == 200
        assert EVIL not in response.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


async def test_actions_use_the_store_rules_and_are_audited(store: Store, clock: ManualClock) -> None:
    alert_id = seed(store, clock)
    other = BotState(clock.now(), "running bot", flags=store, cache_s=0)  # a bot in another process
    async with client_for(make_web_app(store, clock)) as client:
        await login(client)
        token = page_token((await client.get("/alerts")).text)
        ack = await client.post(f"/alerts/{alert_id}/ack", data={"csrf": token, "next": "/alerts"})
        assert ack.status_code == 303 and ack.headers["location"] == "/alerts"
        assert store.open_alerts() == []
        await client.post("/contact/alice/mute", data={"csrf": token, "minutes": "45"})
        assert store.state("alice").muted_until == clock.now() + timedelta(minutes=45)
        # bad input goes back to the page with a message (test_bad_input_goes_back_with_a_message), not an error page
        assert (await client.post("/contact/alice/mute", data={"csrf": token, "minutes": "-3"})).status_code == 303
        assert (await client.post("/contact/nobody/mute", data={"csrf": token, "minutes": "5"})).status_code == 303
        await client.post("/pause", data={"csrf": token})
        assert other.paused
        page = (await client.get("/alerts")).text
        assert "Auto-replies are paused" in page and "Resume auto-replies" in page
        await client.post("/resume", data={"csrf": token, "next": "https://evil.example/"})
        assert not other.paused
        page = (await client.get("/alerts")).text
        contact = (await client.get("/contact/alice")).text
        assert "unmute-button" in contact
        await client.post("/contact/alice/unmute", data={"csrf": token})
        assert store.state("alice").muted_until == clock.now() and "unmute-button" not in (await client.get("/contact/alice")).text
        # an id past what the database holds is no alert, not a server error
        huge = await client.post("/alerts/99999999999999999999999/ack", data={"csrf": token, "next": "/alerts"})
        assert huge.status_code == 303
    assert [(a["actor"], a["action"], a["target"]) for a in store.actions()] == [
        ("sue", "unmute", "alice"), ("sue", "resume", ""), ("sue", "pause", ""), ("sue", "mute", "alice"),
        ("sue", "ack", str(alert_id))]
    assert "Acknowledged" in page and "by sue" in page


def flash_of(html: str) -> tuple[str, str] | None:
    """(role, text) of the page's one-shot message, if it shows one."""
    found = re.search(r'<p id="flash" class="[^"]*" role="(\w+)">([^<]*)</p>', html)
    return (found.group(1), found.group(2)) if found else None


async def test_bad_input_goes_back_with_a_message(store: Store, clock: ManualClock) -> None:
    seed(store, clock)
    def bad_minutes(value: str) -> str:
        return f"Mute minutes must be a whole number from 1 to 43200, not \u201c{value}\u201d: nothing was muted."

    async with client_for(make_web_app(store, clock)) as client:
        await login(client)
        token = page_token((await client.get("/contact/alice")).text)
        for minutes in ("abc", "0", "-3", "43201", "", "1.5", "99999999999999999999999"):
            back = await client.post("/contact/alice/mute", data={"csrf": token, "minutes": minutes, "next": "/contact/alice"})
            assert back.status_code == 303 and back.headers["location"] == "/contact/alice", minutes
            page = await client.get(back.headers["location"])
            assert page.status_code == 200 and flash_of(page.text) == ("alert", bad_minutes(minutes)), minutes
            assert flash_of((await client.get("/contact/alice")).text) is None  # once only: a reload does not repeat it
        for action in ("mute", "unmute"):
            back = await client.post(f"/contact/nobody/{action}", data={"csrf": token, "minutes": "5", "next": "/alerts"})
            assert back.status_code == 303 and back.headers["location"] == "/alerts"
            assert flash_of((await client.get("/alerts")).text) == ("alert", "No such contact: nothing was changed.")
        # the same safe target as on success: never another site
        back = await client.post("/contact/alice/mute", data={"csrf": token, "minutes": "0", "next": "https://evil.example/"})
        assert back.headers["location"] == "/alerts"
        assert flash_of((await client.get("/")).text) == ("alert", bad_minutes("0"))  # whichever page comes next
        # the value shown back is escaped like any other, and cut to a cookie's share
        await client.post("/contact/alice/mute", data={"csrf": token, "minutes": "<b>9</b>" + "x" * 200, "next": "/"})
        shown = flash_of((await client.get("/")).text)
        assert shown is not None and "&lt;b&gt;9&lt;/b&gt;" + "x" * 72 + "\u201d" in shown[1] and "<b>" not in shown[1]
    assert store.state("alice").muted_until is None and store.state("nobody").muted_until is None
    assert store.actions() == []


async def test_actions_confirm_what_they_did_once(store: Store, clock: ManualClock) -> None:
    alert_id = seed(store, clock)
    async with client_for(make_web_app(store, clock)) as client:
        await login(client)
        token = page_token((await client.get("/alerts")).text)
        ack = await client.post(f"/alerts/{alert_id}/ack", data={"csrf": token, "next": "/alerts"})
        cookie = ack.headers["set-cookie"]
        assert "moodbot_flash=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=60" in cookie
        assert flash_of((await client.get("/alerts")).text) == ("status", f"Alert #{alert_id} acknowledged.")
        assert flash_of((await client.get("/alerts")).text) is None
        await client.post(f"/alerts/{alert_id}/ack", data={"csrf": token, "next": "/alerts"})  # acknowledged meanwhile
        gone = flash_of((await client.get("/alerts")).text)
        assert gone is not None and gone[0] == "status" and "is not open" in gone[1]
        await client.post("/contact/alice/mute", data={"csrf": token, "minutes": "45", "next": "/contact/alice"})
        assert flash_of((await client.get("/contact/alice")).text) == ("status", "Muted mood alerts for Alice for 45 min. Crisis alerts still come.")
        await client.post("/contact/alice/unmute", data={"csrf": token, "next": "/contact/alice"})
        assert flash_of((await client.get("/contact/alice")).text) == ("status", "Unmuted Alice.")
        await client.post("/pause", data={"csrf": token, "next": "/alerts"})
        assert flash_of((await client.get("/alerts")).text) == ("status", "Auto-replies paused.")


async def test_a_flash_cookie_carries_only_the_tables_messages(store: Store, clock: ManualClock) -> None:
    from bot.web.flash import COOKIE, Flashes

    app = make_web_app(store, clock)
    async with client_for(app) as client:
        await login(client)
        forged = Flashes("another secret", False)
        ours = app.state.dashboard.flashes
        for value in ("not signed", forged._signer.dumps({"k": "flash_paused", "e": False, "p": {}}),
                      ours._signer.dumps({"k": "login_failed", "e": True, "p": {}}),  # a key that is no flash message
                      ours._signer.dumps({"k": "flash_muted", "e": False, "p": {}})):  # parameters missing
            client.cookies.set(COOKIE, value, domain="127.0.0.1")
            page = await client.get("/alerts")
            assert page.status_code == 200 and flash_of(page.text) is None
            assert COOKIE not in client.cookies  # and the page drops it


def test_flash_messages_take_the_same_parameters_in_both_languages() -> None:
    from string import Formatter

    from bot.web.i18n import STRINGS

    def fields(text: str) -> set[str]:
        return {field for _, field, _, _ in Formatter().parse(text) if field}

    flashes = {key: texts for key, texts in STRINGS.items() if key.startswith("flash_")}
    assert len(flashes) >= 8
    for key, (en, zh) in flashes.items():
        assert fields(en) == fields(zh), key


async def test_the_queue_lists_the_most_urgent_first(store: Store, clock: ManualClock) -> None:
    crisis = store.create_alert(Alert("bob", "bob", "critical", "crisis language", ("...",), ("negative",),
                                      clock.now() - timedelta(hours=5), "Bob"))
    for n in range(3):
        seed(store, clock, contact=f"user{n}", name=f"User {n}")
    handoff = store.create_alert(Alert("carol", "room1@chatroom", "info", "a question the FAQ could not answer", (),
                                       (), clock.now(), "Carol", kind="handoff"))
    async with client_for(make_web_app(store, clock)) as client:
        await login(client)
        page = (await client.get("/alerts")).text
        ids = [int(i) for i in re.findall(r'<tr data-alert-id="(\d+)"', page)]
        assert ids[0] == crisis and ids[-1] == handoff  # crisis first; the hand-off ("info") last
        assert "hand-off" in page and "in room1@chatroom" in page
        overview = (await client.get("/")).text
        assert [int(i) for i in re.findall(r'<tr data-alert-id="(\d+)"', overview)][0] == crisis
        assert "shown-of" not in overview
        for n in range(3, 12):
            seed(store, clock, contact=f"user{n}", name=f"User {n}")
        overview = (await client.get("/")).text
        assert "The 10 most urgent of 14 open alerts are listed." in overview


async def test_pages_show_the_data(store: Store, clock: ManualClock) -> None:
    seed(store, clock)
    async with client_for(make_web_app(store, clock, dashboard_settings(language="zh"))) as client:
        await login(client)
        overview = (await client.get("/")).text
        assert "<title>(1) 总览" in overview and "今日消息" in overview and "<svg" in overview
        assert 'href="/contact/alice"' in overview  # trending down
        contact = (await client.get("/contact/alice")).text
        assert contact.count("<circle") == 9 and "full text" not in contact  # excerpts only: keep_text is off
        assert (await client.get("/contact/nobody")).status_code == 404
        found = await client.get("/contact?q=ALICE")
        assert found.headers["location"] == "/contact/alice"
        assert (await client.get("/contact?q=lic")).headers["location"] == "/contact/alice"  # part of a name
        summary = (await client.get("/api/summary")).json()
        assert summary["open_alerts"] == 1 and summary["open_by_kind"] == {"mood": 1} and not summary["paused"]
        token = page_token(contact)
        await client.post("/contact/alice/mute", data={"csrf": token, "minutes": "0", "next": "/contact/alice"})
        assert flash_of((await client.get("/contact/alice")).text) == ("alert", "静音分钟数必须是 1 到 43200 之间的整数，而不是\u201c0\u201d：未做静音。")
        seed(store, clock, contact="wxid_9", name="alice")  # WeChat names are not unique
        listed = await client.get("/contact?q=Alice")
        assert listed.status_code == 200 and 'href="/contact/alice"' in listed.text and 'href="/contact/wxid_9"' in listed.text


async def test_alert_kinds_are_translated(store: Store, clock: ManualClock) -> None:
    seed(store, clock)
    store.save_state(ContactState("alice", False, clock.now(), None, "high"))  # as the escalation leaves it
    store.create_alert(Alert("carol", "carol", "info", "a question the FAQ could not answer", (), (), clock.now(), "Carol",
                             kind="handoff"))
    async with client_for(make_web_app(store, clock, dashboard_settings(language="zh"))) as client:
        await login(client)
        overview = (await client.get("/")).text
        assert "按类型未处理: 转人工 1 · 情绪 1" in overview
        contact = (await client.get("/contact/alice")).text
        assert "(高)" in contact and "(high)" not in contact  # the contact's last alert severity
        for page in (overview, (await client.get("/alerts")).text, contact):
            assert not re.search(r">[^<]*\b(mood|handoff|high|warning|critical|info)\b[^<]*<", page)


async def test_the_audit_names_a_mute_s_minutes_in_the_dashboard_s_language(store: Store, clock: ManualClock) -> None:
    seed(store, clock)
    store.record_action(clock.now(), "chat:boss", "mute", "alice", "45 min")  # as #mute and the dashboard write it
    async with client_for(make_web_app(store, clock, dashboard_settings(language="zh"))) as client:
        await login(client)
        audit = (await client.get("/alerts")).text.split('id="audit"')[1]
        assert "45 分钟" in audit and "45 min" not in audit


async def test_a_model_server_alert_is_labelled_and_has_no_contact_actions(store: Store, clock: ManualClock) -> None:
    store.create_alert(Alert("model-server", "model-server", "high", "model server down since 09:12: HTTP 503", (), (),
                             clock.now(), "gemma-3-270m", kind="model"))
    async with client_for(make_web_app(store, clock, dashboard_settings(language="zh"))) as client:
        await login(client)
        overview = (await client.get("/")).text
        assert "按类型未处理: 模型服务 1" in overview
        page = (await client.get("/alerts")).text
        assert "模型服务" in page and "gemma-3-270m" in page
        assert "/contact/model-server" not in page  # no contact page and no mute form for the server


async def test_full_text_only_with_keep_text(tmp_path, clock: ManualClock) -> None:
    store = Store(f"sqlite:///{tmp_path / 'k.db'}", keep_text=True)
    seed(store, clock)
    async with client_for(make_web_app(store, clock)) as client:
        await login(client)
        assert "full text Alice" in (await client.get("/contact/alice")).text
    store.close()


async def test_embedded_in_the_application(store: Store, clock: ManualClock) -> None:
    import httpx

    from bot.mock_wechat import free_port
    from tests.fakes import build_app

    port = free_port()
    app, _sender = build_app(clock, store, dashboard={"enabled": True, "password": PASSWORD, "port": port})
    await app.__aenter__()
    try:
        assert app.dashboard is not None and app.dashboard.url == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=app.dashboard.url) as client:
            assert (await client.get("/login")).status_code == 200
            # the dashboard flips the running app's own pause state
            await login(client)
            token = page_token((await client.get("/alerts")).text)
            await client.post("/pause", data={"csrf": token})
            # the live stream sends alerts newer than the page's last one, then the open count
            alert_id = seed(store, clock, contact="dora", name="Dora")
            seen: list[str] = []
            async with client.stream("GET", "/events?after=0") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for line in stream.aiter_lines():
                    seen.append(line)
                    if line.startswith("event: count"):
                        break
        assert app.state.paused
        assert f"id: {alert_id}" in seen and "event: alert" in seen
        data = next(line for line in seen if line.startswith("data: {\"id\""))
        assert f'data-alert-id=\\"{alert_id}\\"' in data and "Dora" in data
    finally:
        await app.__aexit__(None, None, None)
    assert app.dashboard is None


def test_a_password_from_the_environment_is_taken_literally() -> None:
    from bot.config import load_settings

    for raw in ("123456789", "yes please yes", "pass: word here"):
        settings = load_settings(None, {"MOODBOT__DASHBOARD__PASSWORD": raw, "MOODBOT__DASHBOARD__ENABLED": "true"})
        assert settings.dashboard.enabled and require_password(settings.dashboard)(raw)
