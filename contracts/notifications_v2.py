"""Version 2 of the events the notifications service publishes
(``fr.certibloc.notifications.<event>.v2``).

Breaking change from v1: one e-mail or webhook is about every attestation of one candidate's
decision, not about one attestation: ``attestation_id`` became ``decision_id`` and
``attestation_ids``. v1 (``contracts.notifications_v1``) is retired: not published since
2026-12, kept for reading streams written before.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts import notifications_v1
from contracts.events import ContractEvent
from contracts.text import Code, Ref

ERROR_MAX = notifications_v1.ERROR_MAX
DELIVERY_KEY_MAX = 200
ATTESTATIONS_MAX = 32


class NotificationEvent(ContractEvent):
    """Base of the notifications service's published events (v2)."""

    SERVICE: ClassVar[str] = "notifications"
    VERSION: ClassVar[int] = 2


class NotificationSent(NotificationEvent):
    """An e-mail was accepted by the SMTP server, or a webhook by the exam center's endpoint."""

    NAME: ClassVar[str] = "notification-sent"
    delivery_key: str = Field(
        description="Stable key: the e-mail's Message-ID and webhook-id.",
        max_length=DELIVERY_KEY_MAX,
    )
    channel: Literal["email", "webhook"]
    candidate_number: Code
    exam_center: Code
    decision_id: Ref = Field(description="The registry decision the notification is about.")
    attestation_ids: list[Ref] = Field(max_length=ATTESTATIONS_MAX)
    attempts: int = Field(ge=1)
    sent_at: datetime


class NotificationFailed(NotificationEvent):
    """A delivery attempt failed; ``gave_up`` when no more attempts will be made."""

    NAME: ClassVar[str] = "notification-failed"
    delivery_key: str = Field(max_length=DELIVERY_KEY_MAX)
    channel: Literal["email", "webhook"]
    candidate_number: Code
    exam_center: Code
    decision_id: Ref
    attestation_ids: list[Ref] = Field(max_length=ATTESTATIONS_MAX)
    attempts: int = Field(ge=1)
    error: str = Field(max_length=ERROR_MAX)
    gave_up: bool
    failed_at: datetime
    retry_at: datetime | None = None


EVENTS: tuple[type[NotificationEvent], ...] = (NotificationSent, NotificationFailed)
