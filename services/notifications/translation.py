"""Domain events of the notifications service -> published contract events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from contracts import notifications_v2 as v2
from contracts.subjects import candidate_key
from services.notifications.domain import Notification
from services.runtime.outbox import Outgoing, contract


def translate(domain_event: object) -> Sequence[Outgoing]:
    e: Any = domain_event
    if isinstance(domain_event, Notification.Sent):
        sent = contract(
            v2.NotificationSent,
            delivery_key=e.delivery_key,
            channel=e.channel,
            candidate_number=e.candidate_number,
            exam_center=e.exam_center,
            decision_id=getattr(e, "decision_id", None) or e.attestation_id,
            attestation_ids=getattr(e, "attestation_ids", None) or [e.attestation_id],
            attempts=e.attempt,
            sent_at=datetime.fromisoformat(e.at),
        )
        return [Outgoing(sent, sent.event_type(), e.candidate_number, _key(e))]
    if isinstance(domain_event, Notification.Failed | Notification.GaveUp):
        gave_up = isinstance(domain_event, Notification.GaveUp)
        failed = contract(
            v2.NotificationFailed,
            delivery_key=e.delivery_key,
            channel=e.channel,
            candidate_number=e.candidate_number,
            exam_center=e.exam_center,
            decision_id=getattr(e, "decision_id", None) or e.attestation_id,
            attestation_ids=getattr(e, "attestation_ids", None) or [e.attestation_id],
            attempts=e.attempt,
            error=e.error[: v2.ERROR_MAX],
            gave_up=gave_up,
            failed_at=datetime.fromisoformat(e.at),
            retry_at=None if gave_up else datetime.fromisoformat(e.retry_at),
        )
        return [Outgoing(failed, failed.event_type(), e.candidate_number, _key(e))]
    return []


def _key(e: Any) -> str:
    return candidate_key(e.exam_center, e.candidate_number)
