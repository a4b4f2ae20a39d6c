"""Live updates by server-sent events: new alerts and the open count, without a reload.

The stream polls the store (one cheap indexed query every `dashboard.live_poll_s`), so it sees
alerts raised by a bot in another process as well as by the one it shares a process with.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from bot.text import whole_number
from bot.web.auth import Sessions
from bot.web.context import Dashboard

log = logging.getLogger(__name__)

NON_PAGES = {"/events", "/api/summary"}  # GETs that answer 401 rather than redirect to the login form
KEEPALIVE_S = 15.0


def _event(name: str, data: object, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _pause(dash: Dashboard) -> None:
    """Wait one poll interval, in short steps, so that a shutdown ends the stream promptly."""
    left = dash.settings.dashboard.live_poll_s
    while left > 0 and not dash.stopping.is_set():
        await asyncio.sleep(min(left, 0.25))
        left -= 0.25


def _shown(request: Request) -> list[int]:
    """The open alerts the page lists (its `open` parameter), so the stream can say which were acknowledged."""
    ids = []
    for part in (request.query_params.get("open") or "").split(",")[:500]:
        if (alert_id := whole_number(part, 18)) is not None:
            ids.append(alert_id)
    return ids


def register(app: FastAPI, dash: Dashboard) -> None:
    row_template = dash.templates.env.get_template("_alert_row.html")

    @app.get("/events")
    async def events(request: Request) -> Response:
        session = dash.session(request)
        try:
            after = int(request.query_params.get("after") or request.headers.get("last-event-id") or 0)
        except ValueError:
            after = 0

        async def stream() -> AsyncIterator[str]:
            last_id, last_count, quiet = after, -1, 0.0
            shown = _shown(request)
            yield "retry: 3000\n\n"
            while not dash.stopping.is_set():
                # a session that expires while the page stays open ends the stream too
                if dash.sessions.read(request.cookies.get(Sessions.cookie)) is None:
                    yield _event("logout", {})
                    return
                open_count, newest = await asyncio.to_thread(dash.queries.live_state)
                if newest > last_id:
                    for row in await asyncio.to_thread(dash.queries.alerts_after, last_id):
                        html = row_template.render(a=row, t=dash.t, csrf=session.csrf, tz=dash.tz, next="")
                        yield _event("alert", {"id": row.id, "html": html}, row.id)
                        shown.append(row.id)
                    last_id = newest
                if open_count != last_count:
                    # the open ids too, so that a row acknowledged elsewhere (#ack, another supervisor) goes
                    acked = await asyncio.to_thread(dash.queries.acked_among, shown) if shown else []
                    yield _event("count", {"open": open_count, "acked": acked})
                    last_count, quiet = open_count, 0.0
                elif quiet >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"  # proxies close idle streams
                    quiet = 0.0
                await _pause(dash)
                quiet += dash.settings.dashboard.live_poll_s

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})
