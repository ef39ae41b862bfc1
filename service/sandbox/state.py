"""The sandbox's memory: seeded users, events, hooks, injected faults and request counts.

Every method is synchronous. Handlers call them between awaits, so on the one event loop no
two requests can interleave inside an operation: each one is atomic without a lock.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import attrs

from .config import SandboxConfig
from .events import Event, new_event
from .faults import FaultBook
from .hooks import Hook, hook_fields, new_hook
from .seed import Seed, User
from .slots import Interval, common_free_time, free_time
from .switches import Switches
from .wire import JSON, BadRequest, NotFound


@attrs.frozen
class EventQuery:
    """Filters of `GET /v2/events`; empty sets mean no filter.

    Vyte documents `creator_emails` as ignored when `creator_users` is given; invitees may
    be named by user id and by email in one query, and an event with any of them matches.
    """

    limit: int = 100
    title: re.Pattern[str] | None = None
    confirmed_only: bool = False
    upcoming_only: bool = False
    creator_users: frozenset[str] = frozenset()
    creator_emails: frozenset[str] = frozenset()
    invitee_users: frozenset[str] = frozenset()
    invitee_emails: frozenset[str] = frozenset()

    def matches_people(self, event: Event) -> bool:
        if self.creator_users:
            if event.creator.id not in self.creator_users:
                return False
        elif self.creator_emails and self.creator_emails.isdisjoint(event.creator.emails):
            return False
        if self.invitee_users or self.invitee_emails:
            return any(
                i.user in self.invitee_users or i.email in self.invitee_emails
                for i in event.invitees
            )
        return True


class SandboxState:
    def __init__(self, seed: Seed, config: SandboxConfig) -> None:
        unknown = sorted(config.auto_confirm_users - set(seed.users_by_id))
        if unknown:
            raise ValueError(f"auto_confirm_users: no seeded users {unknown}")
        self.seed = seed
        self.config = config
        self.switches = Switches.from_config(config)
        self.events: dict[str, Event] = {}
        self.hooks: dict[str, Hook] = {}
        self.requests: Counter[str] = Counter()
        self.faults = FaultBook()

    @property
    def organization_id(self) -> str:
        return self.seed.organization.id

    def reset(self) -> None:
        """Back to the seed: no events, hooks, faults or counts; the configured settings."""
        self.switches = Switches.from_config(self.config)
        self.events.clear()
        self.hooks.clear()
        self.requests.clear()
        self.faults.clear()

    # Availability

    def common_free_time(self, users: Iterable[User], span: Interval) -> list[Interval]:
        """When all `users` are free within `span`: working hours minus busy blocks and events."""
        return common_free_time(
            (
                free_time(user.hours, user.zone, [*user.busy, *self._event_time(user)], span)
                for user in users
            ),
            span,
        )

    def _event_time(self, user: User) -> list[Interval]:
        return [
            interval
            for event in self.events.values()
            if not event.cancelled and event.involves(user)
            for interval in event.busy()
        ]

    def user_json(self, user: User) -> JSON:
        return {**user.to_json(), "auto_confirm": user.id in self.switches.auto_confirm}

    def set_auto_confirm(self, user_id: str, body: object) -> User:
        user = self.seed.users_by_id.get(user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        if not isinstance(body, dict) or not isinstance(body.get("auto_confirm"), bool):
            raise BadRequest('body must be {"auto_confirm": true|false}')
        if body["auto_confirm"]:
            self.switches.auto_confirm.add(user.id)
        else:
            self.switches.auto_confirm.discard(user.id)
        return user

    # Events

    def create_event(self, body: object, at: datetime) -> Event:
        event = new_event(body, self.seed, at)
        # A booking made on a page with `auto_confirm` comes back already confirmed.
        if event.vyteme and not event.confirmed and event.creator.id in self.switches.auto_confirm:
            event.mark_confirmed(
                event.closest_date_id(at), event.places[0].id if event.places else None, at
            )
        self.events[event.id] = event
        return event

    def event(self, event_id: str) -> Event:
        event = self.events.get(event_id)
        if event is None:
            raise NotFound(f"no event {event_id}")
        return event

    def find_events(self, query: EventQuery, at: datetime) -> list[Event]:
        """Newest first, at most `query.limit`."""
        found: list[Event] = []
        # Insertion order is creation order, even for events created in the same millisecond.
        for event in reversed(self.events.values()):
            if query.title is not None and query.title.search(event.title) is None:
                continue
            if query.confirmed_only and (not event.confirmed or event.cancelled):
                continue
            if query.upcoming_only and (
                event.cancelled or all(d.end <= at.astimezone(UTC) for d in event.dates)
            ):
                continue
            if not query.matches_people(event):
                continue
            found.append(event)
            if len(found) >= query.limit:
                break
        return found

    def event_json(self, event: Event) -> JSON:
        return event.to_json(self.organization_id)

    # Hooks

    def add_hook(self, body: object, at: datetime) -> Hook:
        hook = new_hook(body, self.organization_id, at, allow_http=self.config.allow_http_hooks)
        self.hooks[hook.id] = hook
        return hook

    def hook(self, hook_id: str) -> Hook:
        hook = self.hooks.get(hook_id)
        if hook is None:
            raise NotFound(f"no hook {hook_id}")
        return hook

    def update_hook(self, hook_id: str, body: object, at: datetime) -> Hook:
        hook = self.hook(hook_id)
        hook.action, hook.target_url = hook_fields(body, allow_http=self.config.allow_http_hooks)
        hook.updated_at = at
        hook.version += 1
        return hook

    def remove_hook(self, hook_id: str) -> None:
        self.hook(hook_id)
        del self.hooks[hook_id]

    def hooks_json(self) -> object:
        listed = [hook.to_json() for hook in self.hooks.values()]
        return {"hooks": listed} if self.switches.hook_list_shape == "object" else listed

    def hooks_for(self, action: str) -> list[Hook]:
        return [hook for hook in self.hooks.values() if hook.action == action]

    # Statistics

    def count_request(self, route: str) -> None:
        self.requests[route] += 1

    def stats_json(self) -> JSON:
        return {"requests": dict(sorted(self.requests.items()))}
