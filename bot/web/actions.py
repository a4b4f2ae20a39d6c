"""The dashboard's POST actions: acknowledge, mute, pause, resume. Each is written to the audit table.

They call the same store operations as the #ack, #mute and #unmute admin commands and flip the same pause
state, so a rule lives in one place.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from bot.domain import MAX_ALERT_ID, MAX_MUTE_MINUTES
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


def _back(form: dict[str, str]) -> Response:
    return RedirectResponse(safe_next(form.get("next"), "/alerts"), status_code=303)


def register(app: FastAPI, dash: Dashboard) -> None:
    store = dash.store

    async def record(session: Session, action: str, target: str = "", detail: str = "") -> None:
        log.info("dashboard: %s %s %s %s", session.user, action, target, detail)
        await asyncio.to_thread(store.record_action, dash.clock.now(), session.user, action, target, detail)

    @app.post("/alerts/{alert_id}/ack")
    async def ack(request: Request, alert_id: int) -> Response:
        session, form = await checked(request, dash)
        if 0 < alert_id <= MAX_ALERT_ID and await asyncio.to_thread(store.ack, alert_id, dash.clock.now()):
            await record(session, "ack", str(alert_id))
        return _back(form)

    @app.post("/contact/{contact_id:path}/mute")
    async def mute(request: Request, contact_id: str) -> Response:
        session, form = await checked(request, dash)
        try:
            minutes = int(form.get("minutes", "60"))
        except ValueError:
            raise HTTPException(status_code=422, detail="minutes must be a whole number") from None
        if not 1 <= minutes <= MAX_MUTE_MINUTES:
            raise HTTPException(status_code=422, detail=f"minutes must be 1 to {MAX_MUTE_MINUTES}")
        if await asyncio.to_thread(dash.queries.contact, contact_id) is None:
            raise HTTPException(status_code=404, detail="no such contact")
        await asyncio.to_thread(store.mute, contact_id, dash.clock.now() + timedelta(minutes=minutes))
        await record(session, "mute", contact_id, f"{minutes} min")
        return _back(form)

    @app.post("/contact/{contact_id:path}/unmute")
    async def unmute(request: Request, contact_id: str) -> Response:
        session, form = await checked(request, dash)
        if await asyncio.to_thread(dash.queries.contact, contact_id) is None:
            raise HTTPException(status_code=404, detail="no such contact")
        await asyncio.to_thread(store.mute, contact_id, dash.clock.now())
        await record(session, "unmute", contact_id)
        return _back(form)

    @app.post("/pause")
    async def pause(request: Request) -> Response:
        session, form = await checked(request, dash)
        await asyncio.to_thread(setattr, dash.state, "paused", True)
        await record(session, "pause")
        return _back(form)

    @app.post("/resume")
    async def resume(request: Request) -> Response:
        session, form = await checked(request, dash)
        await asyncio.to_thread(setattr, dash.state, "paused", False)
        await record(session, "resume")
        return _back(form)
