"""Domain events of the notifications service -> published contract events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from contracts import notifications_v1 as v1
from services.notifications.domain import Notification
from services.runtime.outbox import Outgoing, contract


def translate(domain_event: object) -> Sequence[Outgoing]:
    e: Any = domain_event
    if isinstance(domain_event, Notification.Sent):
        sent = contract(
            v1.NotificationSent,
            delivery_key=e.delivery_key,
            channel=e.channel,
            candidate_number=e.candidate_number,
            exam_center=e.exam_center,
            attestation_id=e.attestation_id,
            attempts=e.attempt,
            sent_at=datetime.fromisoformat(e.at),
        )
        return [Outgoing(sent, sent.event_type(), e.candidate_number)]
    if isinstance(domain_event, Notification.Failed | Notification.GaveUp):
        gave_up = isinstance(domain_event, Notification.GaveUp)
        failed = contract(
            v1.NotificationFailed,
            delivery_key=e.delivery_key,
            channel=e.channel,
            candidate_number=e.candidate_number,
            exam_center=e.exam_center,
            attestation_id=e.attestation_id,
            attempts=e.attempt,
            error=e.error[: v1.ERROR_MAX],
            gave_up=gave_up,
            failed_at=datetime.fromisoformat(e.at),
            retry_at=None if gave_up else datetime.fromisoformat(e.retry_at),
        )
        return [Outgoing(failed, failed.event_type(), e.candidate_number)]
    return []
