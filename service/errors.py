"""Errors the use-cases raise, each carrying the problem it becomes at the HTTP edge.

Clients branch on `type`, a stable relative URI: `/problems/<slug>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs

from service.domain.participant import ParticipantState


@attrs.frozen
class FieldError:
    field: str
    message: str


class ServiceError(Exception):
    """Base of every error that becomes an RFC 9457 problem."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        participants: Sequence[ParticipantState] = (),
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        #: an availability query's participants, each with how reading it went
        self.participants = tuple(participants)
        #: a create failed after it may have reached Vyte: a reconciler now decides it, so an
        #: Idempotency-Key stays claimed (for the reconciler's answer) instead of being freed
        self.outcome_unknown = False

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"


class ValidationFailed(ServiceError):
    status, slug, title = 400, "validation-error", "Invalid request"

    def __init__(self, errors: Sequence[FieldError]) -> None:
        fields = ", ".join(sorted({e.field for e in errors}))
        super().__init__(f"invalid: {fields}", errors=errors)


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Unauthorized"


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class BookingNotFound(NotFound):
    """No booking with this id that the caller may see: another caller's booking answers
    exactly as a missing one, so ids reveal nothing."""

    slug, title = "booking-not-found", "Booking not found"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class SlotUnavailable(Conflict):
    slug, title = "slot-unavailable", "Slot unavailable"


class BookingCancelled(Conflict):
    slug, title = "booking-cancelled", "Booking cancelled"


class SubscriptionLimit(Conflict):
    slug, title = "subscription-limit", "Subscription limit"


class IdempotencyKeyInFlight(Conflict):
    slug, title = "idempotency-key-in-flight", "Request with this Idempotency-Key in progress"


class IdempotencyKeyReused(ServiceError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key reused"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class UnknownParticipant(ServiceError):
    status, slug, title = 422, "unknown-participant", "Unknown participant"


class UpstreamFailed(ServiceError):
    status, slug, title = 502, "upstream-error", "Upstream error"


class UpstreamUnavailable(ServiceError):
    status, slug, title = 503, "upstream-unavailable", "Upstream unavailable"


class ServiceUnavailable(ServiceError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


class UpstreamTimeout(ServiceError):
    status, slug, title = 504, "upstream-timeout", "Upstream timeout"
