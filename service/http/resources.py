"""How every resource is shown to callers, in API answers and webhook payloads alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.availability import Availability
from service.domain.freetime import format_instant
from service.domain.participant import ParticipantState


def participant_states(states: Sequence[ParticipantState]) -> list[dict[str, str]]:
    """An availability query's participants: `ok`, or `error` with the reason and a detail."""
    listed = []
    for state in states:
        entry = {"id": state.participant.given, "status": "ok" if state.ok else "error"}
        if not state.ok:
            entry["reason"] = state.status
            entry["detail"] = state.detail or state.status
        listed.append(entry)
    return listed


def availability_answer(answer: Availability, by_day: bool) -> dict[str, Any]:
    """GET /v1/availability's answer: the slots, or with `by_day` the dates that have some."""
    q = answer.query
    zone = q.zone
    names = [p.given for p in q.participants]
    # A slot's end is usually another slot's start, and neighbouring slots usually have the
    # same participants (find_slots hands out the same tuple then): build each text once.
    texts: dict[int, str] = {}
    members: tuple[int, ...] | None = None
    who: list[str] = []
    slots: list[dict[str, Any]] = []
    for m in answer.slots:
        start = texts.get(m.start)
        if start is None:
            start = texts[m.start] = format_instant(m.start, zone)
        end = texts.get(m.end)
        if end is None:
            end = texts[m.end] = format_instant(m.end, zone)
        if m.participants is not members:
            members = m.participants
            who = [names[i] for i in members]
        slots.append({"start": start, "end": end, "participants": who})
    body: dict[str, Any] = {
        "timezone": q.timezone,
        "from": q.first.isoformat(),
        "to": q.last.isoformat(),
        "duration": q.duration,
        "step": q.step,
        "required": q.required,
        "complete": answer.complete,
        "participants": participant_states(answer.participants),
    }
    if by_day:
        days: dict[str, list[dict[str, Any]]] = {}
        for slot in slots:
            # The local date opens the formatted start ("2020-10-01T09:00:00+02:00").
            days.setdefault(slot["start"][:10], []).append(slot)
        body["days"] = [{"date": d, "slots": s} for d, s in days.items()]
    else:
        body["slots"] = slots
    return body
