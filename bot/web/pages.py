"""The dashboard's pages: overview, alerts queue, one contact. Each runs its queries off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from bot.domain import HANDOFF, Label, rolling_score
from bot.web.charts import daily_chart, timeline_chart
from bot.web.context import Dashboard
from bot.web.i18n import STRINGS


def _mood_names(dash: Dashboard) -> dict[str, str]:
    return {label.value: dash.t(label.value) for label in Label}


def _kind_names(dash: Dashboard, kinds: Iterable[str]) -> dict[str, str]:
    # a kind the table does not know yet (a new table with a kind column) shows as it is stored
    return {kind: dash.t(f"kind_{kind}") if f"kind_{kind}" in STRINGS else kind for kind in kinds}


def register(app: FastAPI, dash: Dashboard) -> None:
    q = dash.queries

    def overview_data() -> dict[str, Any]:
        now = dash.clock.now()
        kinds = q.open_by_kind()
        open_alerts = q.open_alerts(limit=10)
        open_count, last_id = q.live_state()
        return {
            "today": q.mood_counts(q.start_of_day(now)), "kinds": kinds, "handoffs": kinds.get(HANDOFF, 0),
            "open_alerts": open_alerts, "open_count": open_count, "last_id": last_id,
            "trending": q.trending_down(now), "days": q.daily_counts(now, 14),
        }

    @app.get("/")
    async def overview(request: Request) -> Response:
        session = dash.session(request)
        data = await asyncio.to_thread(overview_data)
        names = _mood_names(dash)
        chart = daily_chart(data["days"], names, dash.t("chart_14"), dash.tz)
        return dash.render(request, "overview.html", session, page="overview", chart=chart, names=names,
                           kind_names=_kind_names(dash, data["kinds"]), **data)

    def alerts_data() -> dict[str, Any]:
        open_count, last_id = q.live_state()
        return {"open_alerts": q.open_alerts(), "acked": q.acknowledged_alerts(), "open_count": open_count,
                "last_id": last_id, "muted": q.muted(dash.clock.now()), "audit": q.actions(20)}

    @app.get("/alerts")
    async def alerts_queue(request: Request) -> Response:
        session = dash.session(request)
        data = await asyncio.to_thread(alerts_data)
        return dash.render(request, "alerts.html", session, page="alerts", **data)

    @app.get("/contact")
    async def find_contact(request: Request, q: str = "") -> Response:
        session = dash.session(request)
        found = await asyncio.to_thread(dash.store.find_contacts, q)
        if not found:
            return RedirectResponse("/?missing=1", status_code=303)
        if len(found) == 1:
            return RedirectResponse(f"/contact/{quote(found[0][0], safe='')}", status_code=303)
        # names are not unique and a part of a name matches several: let the supervisor pick
        open_count, last_id = await asyncio.to_thread(dash.queries.live_state)
        return dash.render(request, "matches.html", session, page="contact", query=q, matches=found,
                           open_count=open_count, last_id=last_id)

    def contact_data(contact_id: str) -> dict[str, Any] | None:
        found = q.contact(contact_id)
        if found is None:
            return None
        name, state = found
        points = q.timeline(contact_id)
        open_count, last_id = q.live_state()
        recent = points[-20:][::-1]
        # the escalation's rolling score, as #mood shows it
        score = rolling_score(points[-dash.settings.escalation.score_points:])
        return {"contact_id": contact_id, "name": name, "state": state, "points": points, "recent": recent,
                "score": score, "history": q.contact_alerts(contact_id), "open_count": open_count, "last_id": last_id}

    @app.get("/contact/{contact_id:path}")
    async def contact(request: Request, contact_id: str) -> Response:
        session = dash.session(request)
        data = await asyncio.to_thread(contact_data, contact_id)
        if data is None:
            return dash.render(request, "missing.html", session, status_code=404, page="contact", open_count=0, last_id=0)
        names = _mood_names(dash)
        chart = timeline_chart(data["points"], names, dash.t("timeline"), dash.tz)
        now = dash.clock.now()
        muted = data["state"].muted_until is not None and data["state"].muted_until > now
        return dash.render(request, "contact.html", session, page="contact", chart=chart, names=names,
                           keep_text=dash.store.keep_text, muted=muted, **data)

    @app.get("/api/summary")
    async def summary(request: Request) -> Response:
        dash.session(request)
        open_count, last_id = await asyncio.to_thread(q.live_state)
        kinds = await asyncio.to_thread(q.open_by_kind)
        return JSONResponse({"open_alerts": open_count, "last_alert_id": last_id, "open_by_kind": kinds,
                             "paused": dash.state.paused, "at": dash.clock.now().isoformat()})
