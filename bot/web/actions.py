"""The dashboard's POST actions: acknowledge, mute, pause, resume. Each is written to the audit table.

They call the same store operations as the #ack, #mute and #unmute admin commands and flip the same pause
state, so a rule lives in one place. Each answers with a redirect back to the page it came from, with a
one-shot message that says what was done, or why nothing was (a bad number of minutes, a contact that
is not there): a supervisor sees the page again with that line, not an error page.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from bot.domain import MAX_MUTE_MINUTES, mute_detail
from bot.web.auth import Session, csrf_ok
from bot.web.context import Dashboard, safe_next

log = logging.getLogger(__name__)


async def checked(request: Request, dash: Dashboard) -> tuple[Session, dict[str, str]]:
    """The session and the form, after the CSRF check; 401 without a session, 403 on a bad token."""
    session = dash.session(request)
    form = {key: str(value) for key, value in (await request.form()).items()}
    if not csrf_ok(session, form.get("csrf")):
        log.warning("dashboard POST %s without a valid CSRF token", request.url.path)
        raise HTTPException(status_code=403, detail="bad or missing CSRF token")
    return session, form


def _back(dash: Dashboard, form: dict[str, str], key: str, *, error: bool = False, **params: str | int) -> Response:
    response = RedirectResponse(safe_next(form.get("next"), "/alerts"), status_code=303)
    dash.flashes.set(response, key, error=error, **params)
    return response


def _minutes(form: dict[str, str]) -> int | None:
    try:
        minutes = int(form.get("minutes", "60"))
    except ValueError:
        return None
    return minutes if 1 <= minutes <= MAX_MUTE_MINUTES else None


def register(app: FastAPI, dash: Dashboard) -> None:
    store = dash.store

    async def record(session: Session, action: str, target: str = "", detail: str = "") -> None:
        log.info("dashboard: %s %s %s %s", session.user, action, target, detail)
        await asyncio.to_thread(store.record_action, dash.clock.now(), session.user, action, target, detail)

    @app.post("/alerts/{alert_id}/ack")
    async def ack(request: Request, alert_id: int) -> Response:
        session, form = await checked(request, dash)
        if await asyncio.to_thread(store.ack, alert_id, dash.clock.now()):
            await record(session, "ack", str(alert_id))
            return _back(dash, form, "flash_acked", id=alert_id)
        # acknowledged meanwhile (#ack, another supervisor), or no such alert: what was wanted holds anyway
        return _back(dash, form, "flash_ack_gone", id=str(alert_id))  # a str: cut to length like any parameter

    @app.post("/contact/{contact_id:path}/mute")
    async def mute(request: Request, contact_id: str) -> Response:
        session, form = await checked(request, dash)
        minutes = _minutes(form)
        if minutes is None:
            return _back(dash, form, "flash_bad_minutes", error=True, max=MAX_MUTE_MINUTES,
                         value=form.get("minutes", ""))
        found = await asyncio.to_thread(dash.queries.contact, contact_id)
        if found is None:
            return _back(dash, form, "flash_no_contact", error=True)
        await asyncio.to_thread(store.mute, contact_id, dash.clock.now() + timedelta(minutes=minutes))
        await record(session, "mute", contact_id, mute_detail(minutes))
        return _back(dash, form, "flash_muted", name=found[0], minutes=minutes)

    @app.post("/contact/{contact_id:path}/unmute")
    async def unmute(request: Request, contact_id: str) -> Response:
        session, form = await checked(request, dash)
        found = await asyncio.to_thread(dash.queries.contact, contact_id)
        if found is None:
            return _back(dash, form, "flash_no_contact", error=True)
        await asyncio.to_thread(store.mute, contact_id, dash.clock.now())
        await record(session, "unmute", contact_id)
        return _back(dash, form, "flash_unmuted", name=found[0])

    @app.post("/pause")
    async def pause(request: Request) -> Response:
        session, form = await checked(request, dash)
        await asyncio.to_thread(setattr, dash.state, "paused", True)
        await record(session, "pause")
        return _back(dash, form, "flash_paused")

    @app.post("/resume")
    async def resume(request: Request) -> Response:
        session, form = await checked(request, dash)
        await asyncio.to_thread(setattr, dash.state, "paused", False)
        await record(session, "resume")
        return _back(dash, form, "flash_resumed")
