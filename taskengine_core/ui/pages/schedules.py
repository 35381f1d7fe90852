"""``/ui/schedules``: each schedule's next fire times in its own zone (and the viewer's), a
seven-day agenda of everything that will fire, and the slots that were missed or coalesced."""

from __future__ import annotations

from datetime import timedelta

from taskengine_core import catalog
from taskengine_core.clock import to_iso
from taskengine_core.store import dashboard as q

AGENDA_DAYS = 7
AGENDA_LIMIT = 500  # entries; an every-minute schedule would otherwise fill the page


def routes(dash):
    async def schedules_page(request):
        data = await dash.query(_schedules, dash.engine.clock.now(),
                                dash.engine.runtime.settings.get("timezone") or "UTC")
        return await dash.render_page(request, "schedules.html", data)

    return [("GET", "/ui/schedules", schedules_page)]


def _schedules(store, now, default_zone: str) -> dict:
    from taskengine_core.recurrence import compile_schedule

    state = q.schedule_states(store.conn)
    horizon = now + timedelta(days=AGENDA_DAYS)
    schedules, agenda = [], []
    for row in catalog.list_objects(store, "schedule"):
        recurrence = compile_schedule(row["spec"], default_zone)
        stored = state.get(row["name"], {}).get("next_fire")
        upcoming = recurrence.upcoming(now, 3)
        schedules.append({**row, "when": recurrence.describe(), "timezone": str(recurrence.timezone),
                          "next_fire": stored or (to_iso(upcoming[0]) if upcoming else None),
                          "upcoming": [(t.astimezone(recurrence.timezone).strftime("%a %Y-%m-%d %H:%M %Z"),
                                        to_iso(t)) for t in upcoming]})
        if not row["enabled"] or not row["tasks"]:
            continue
        moment = now
        while len(agenda) < AGENDA_LIMIT:
            moment = recurrence.next_after(moment)
            if moment is None or moment > horizon:
                break
            agenda.append((to_iso(moment), moment.astimezone(recurrence.timezone).strftime("%a %H:%M %Z"),
                           row["name"], row["tasks"]))
    agenda.sort()
    return {"schedules": schedules, "agenda": agenda, "agenda_full": len(agenda) >= AGENDA_LIMIT,
            "missed": q.missed_slots(store.conn), "days": AGENDA_DAYS}
