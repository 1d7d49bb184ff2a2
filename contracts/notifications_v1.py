"""Version 1 of the events the notifications service published
(``fr.certibloc.notifications.<event>.v1``): retired since 2026-12 (one notification per
attestation), superseded by ``contracts.notifications_v2``; kept for reading older streams."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts.events import ContractEvent
from contracts.text import Code, Ref

ERROR_MAX = 1000  # an SMTP or HTTP error, as the receiver worded it (cut at this length)


class NotificationEvent(ContractEvent):
    """Base of the notifications service's published events."""

    SERVICE: ClassVar[str] = "notifications"


class NotificationSent(NotificationEvent):
    """An e-mail was accepted by the SMTP server, or a webhook by the exam center's endpoint."""

    NAME: ClassVar[str] = "notification-sent"
    delivery_key: str = Field(
        description="Stable key: the e-mail's Message-ID and webhook-id.", max_length=200
    )
    channel: Literal["email", "webhook"]
    candidate_number: Code
    exam_center: Code
    attestation_id: Ref
    attempts: int = Field(ge=1)
    sent_at: datetime


class NotificationFailed(NotificationEvent):
    """A delivery attempt failed; ``gave_up`` when no more attempts will be made."""

    NAME: ClassVar[str] = "notification-failed"
    delivery_key: str = Field(max_length=200)
    channel: Literal["email", "webhook"]
    candidate_number: Code
    exam_center: Code
    attestation_id: Ref
    attempts: int = Field(ge=1)
    error: str = Field(max_length=ERROR_MAX)
    gave_up: bool
    failed_at: datetime
    retry_at: datetime | None = None


EVENTS: tuple[type[NotificationEvent], ...] = ()
RETIRED: tuple[type[NotificationEvent], ...] = (NotificationSent, NotificationFailed)
