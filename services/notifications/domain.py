"""Aggregates of the notifications service.

A ``Notification`` is one message to deliver (an e-mail to a candidate, a webhook to an exam
center) about one candidate's decision (every attestation it issued or revoked), under a
stable delivery key. Its life: queued -> attempting (a claim, recorded before
sending) -> sent | failed (retry later) | gave up; replay re-queues a failed one. Because the
claim is an event with an expected version, two replicas can never both claim the same attempt,
and the delivery key becomes the e-mail's Message-ID and the webhook-id, so a receiver can
recognise the resend that follows a crash between sending and recording.
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

NAMESPACE = UUID("9d0e6a37-41c2-4b5e-8f77-2b1d3c4e5f60")


class Notification(Aggregate):
    Queued: ClassVar[type[Aggregate.Created]]
    Attempting: ClassVar[type[Aggregate.Event]]
    Sent: ClassVar[type[Aggregate.Event]]
    Failed: ClassVar[type[Aggregate.Event]]
    GaveUp: ClassVar[type[Aggregate.Event]]
    Replayed: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(delivery_key: str) -> UUID:
        return uuid5(NAMESPACE, f"notification:{delivery_key}")

    @event("Queued")
    def __init__(
        self,
        delivery_key: str,
        channel: str,
        candidate_number: str,
        exam_center: str,
        attestation_id: str,
        payload: dict[str, Any],
        queued_at: str,
        traceparent: str | None = None,
        decision_id: str | None = None,  # since 2026-12; before, one per attestation
        attestation_ids: list[str] | None = None,
    ) -> None:
        self.delivery_key = delivery_key
        self.channel = channel
        self.candidate_number = candidate_number
        self.exam_center = exam_center
        self.attestation_id = attestation_id
        self.decision_id = decision_id or attestation_id
        self.attestation_ids = attestation_ids or ([attestation_id] if attestation_id else [])
        self.payload = payload
        self.queued_at = queued_at
        self.state = "queued"
        self.attempts = 0
        self.claimed_at: str | None = None
        self.retry_at: str | None = None
        self.last_error: str | None = None
        self.sent_at: str | None = None
        self.history: list[dict[str, Any]] = []
        # The trace of the event that queued it: its delivery outcomes, recorded later by the
        # dispatcher, are stamped with it (services.runtime.tracing.stamp_pending).
        self.traceparent = traceparent

    @event("Attempting")
    def claim(self, attempt: int, at: str, worker: str) -> None:
        self.state = "attempting"
        self.attempts = attempt
        self.claimed_at = at
        self.history.append({"attempt": attempt, "at": at, "outcome": "attempting"})

    def _facts(self) -> dict[str, Any]:
        # Each outcome event names the notification fully, so it can be published on its own.
        return {
            "delivery_key": self.delivery_key,
            "channel": self.channel,
            "candidate_number": self.candidate_number,
            "exam_center": self.exam_center,
            "attestation_id": self.attestation_id,
            "decision_id": self.decision_id,
            "attestation_ids": self.attestation_ids,
        }

    def sent(self, at: str, detail: str) -> None:
        self._sent(at=at, detail=detail, attempt=self.attempts, **self._facts())

    @event("Sent")
    def _sent(
        self,
        at: str,
        detail: str,
        attempt: int,
        delivery_key: str,
        channel: str,
        candidate_number: str,
        exam_center: str,
        attestation_id: str,
        decision_id: str | None = None,
        attestation_ids: list[str] | None = None,
    ) -> None:
        self.state = "sent"
        self.sent_at = at
        self.history[-1] = {"attempt": attempt, "at": at, "outcome": "sent", "detail": detail}

    def failed(self, at: str, error: str, retry_at: str) -> None:
        self._failed(at=at, error=error, retry_at=retry_at, attempt=self.attempts, **self._facts())

    @event("Failed")
    def _failed(
        self,
        at: str,
        error: str,
        retry_at: str,
        attempt: int,
        delivery_key: str,
        channel: str,
        candidate_number: str,
        exam_center: str,
        attestation_id: str,
        decision_id: str | None = None,
        attestation_ids: list[str] | None = None,
    ) -> None:
        self.state = "failed"
        self.retry_at = retry_at
        self.last_error = error
        self.history[-1] = {"attempt": attempt, "at": at, "outcome": "failed", "detail": error}

    def give_up(self, at: str, error: str) -> None:
        self._gave_up(at=at, error=error, attempt=self.attempts, **self._facts())

    @event("GaveUp")
    def _gave_up(
        self,
        at: str,
        error: str,
        attempt: int,
        delivery_key: str,
        channel: str,
        candidate_number: str,
        exam_center: str,
        attestation_id: str,
        decision_id: str | None = None,
        attestation_ids: list[str] | None = None,
    ) -> None:
        self.state = "gave_up"
        self.last_error = error
        self.history[-1] = {"attempt": attempt, "at": at, "outcome": "gave_up", "detail": error}

    @event("Replayed")
    def replay(self, at: str) -> None:
        self.state = "queued"
        self.attempts = 0
        self.retry_at = None
        self.history.append({"attempt": 0, "at": at, "outcome": "replayed"})


class Recipient(Aggregate):
    """A candidate as the notifications service knows them, and what was sent about them.

    Identified by the exam center and the candidate number; recipients recorded before
    2026-12 are keyed by the number alone (``legacy_id``): lookups try both."""

    @staticmethod
    def create_id(exam_center: str, candidate_number: str) -> UUID:
        return uuid5(NAMESPACE, f"recipient:{exam_center}:{candidate_number}")

    @staticmethod
    def legacy_id(candidate_number: str) -> UUID:
        return uuid5(NAMESPACE, f"recipient:{candidate_number}")

    @event("Registered")
    def __init__(
        self,
        candidate_number: str,
        exam_center: str,
        email: str,
        given_names: list[str],
        family_name: str,
    ) -> None:
        self.candidate_number = candidate_number
        self.exam_center = exam_center
        self.email = email
        self.given_names = given_names
        self.family_name = family_name
        self.delivery_keys: list[str] = []
        self._pending: list[str] = []

    @property
    def display_name(self) -> str:
        return " ".join([*self.given_names, self.family_name])

    def note(self, delivery_key: str) -> None:
        self._pending.append(delivery_key)

    def knows(self, delivery_key: str) -> bool:
        """Already queued: a replayed upstream event must not queue it twice. The index is
        written in the same transaction as the notifications, so it cannot be behind them."""
        return delivery_key in self._pending or delivery_key in self.delivery_keys

    def flush(self) -> None:
        """One event per batch for all the notifications queued about this candidate."""
        if self._pending:
            keys, self._pending = self._pending, []
            self._noted(keys=keys)

    @event("Noted")
    def _noted(self, keys: list[str]) -> None:
        self.delivery_keys.extend(keys)


class Webhook(Aggregate):
    """An exam center's webhook endpoint and its signing secret (kept to sign, never shown
    again after registration)."""

    @staticmethod
    def create_id(exam_center: str) -> UUID:
        return uuid5(NAMESPACE, f"webhook:{exam_center}")

    @event("Registered")
    def __init__(self, exam_center: str, url: str, secret: str, at: str) -> None:
        self.exam_center = exam_center
        self.url = url
        self.secret = secret
        self.registered_at = at

    @event("Replaced")
    def replace(self, url: str, secret: str, at: str) -> None:
        self.url = url
        self.secret = secret
        self.registered_at = at
