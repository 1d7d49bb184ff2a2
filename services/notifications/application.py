"""The notifications application: queues a notification for every attestation event (an
e-mail to the candidate, a webhook to the exam center if it registered one), atomically with
the upstream position; the dispatcher sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent

from contracts.envelope import CloudEvent
from contracts.subjects import event_type
from services.notifications.domain import Notification, Recipient, Webhook
from services.notifications.webhooks import new_secret
from services.runtime import centers, tokens, tracing
from services.runtime.store import ServiceApplication

CANDIDATE_REGISTERED = event_type("registry", "candidate-registered", 1)
ISSUED = event_type("attestations", "attestation-issued", 1)
REVOKED = event_type("attestations", "attestation-revoked", 1)
DOWNLOAD_LINK_TTL = 90 * 24 * 3600  # a personal link stays usable for 90 days


class UnknownRecipient(LookupError):
    """An attestation event arrived before its candidate's registration (another stream):
    the batch is retried until the registry's consumer caught up."""


class NotificationsApp(ServiceApplication):
    name = "Notifications"
    cached_types = (Recipient,)  # read for every attestation event

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        attestations_url: str,
        download_secret: bytes,
        sender: str,
        mail_domain: str,
    ) -> None:
        super().__init__(env)
        self.attestations_url = attestations_url.rstrip("/")
        self.download_secret = download_secret
        self.sender = sender
        self.mail_domain = mail_domain

    # --- consuming ---------------------------------------------------------------------------

    def handle_registry(self, event: CloudEvent, unit: ProcessingEvent[UUID]) -> None:
        if event.type == CANDIDATE_REGISTERED:
            data = event.data
            if self.get_in(unit, Recipient.create_id(data["candidate_number"]), Recipient):
                return
            recipient = Recipient(
                candidate_number=data["candidate_number"],
                exam_center=data["exam_center"],
                email=data["email"],
                given_names=data["given_names"],
                family_name=data.get("usage_name") or data["birth_name"],
            )
            self.stage(unit, recipient)
        else:
            centers.apply_key_event(self, event, unit)

    def handle_attestations(self, event: CloudEvent, unit: ProcessingEvent[UUID]) -> None:
        if event.type not in (ISSUED, REVOKED):
            return
        data = event.data
        what = "issued" if event.type == ISSUED else "revoked"
        recipient = self.get_in(unit, Recipient.create_id(data["candidate_number"]), Recipient)
        if recipient is None:
            raise UnknownRecipient(data["candidate_number"])
        now = _now()
        attestation_id = data["attestation_id"]
        mail_key = f"mail:{attestation_id}:{what}"
        if not recipient.knows(mail_key):
            token = tokens.mint(self.download_secret, recipient.candidate_number, DOWNLOAD_LINK_TTL)
            base = f"{self.attestations_url}/v1/attestations/{attestation_id}"
            mail = Notification(
                delivery_key=mail_key,
                channel="email",
                candidate_number=recipient.candidate_number,
                exam_center=recipient.exam_center,
                attestation_id=attestation_id,
                payload={
                    "event": what,
                    "to_address": recipient.email,
                    "holder_name": recipient.display_name,
                    "kind": data["kind"],
                    "code": data["code"],
                    "title": data.get("title", data["code"]),
                    "certification": data.get("certification", ""),
                    "verify_url": data["verify_url"],
                    "download_url": f"{base}/pdf?token={token}" if what == "issued" else None,
                    "credential_url": f"{base}/credential?token={token}"
                    if what == "issued"
                    else None,
                    "reason": data.get("reason"),
                },
                queued_at=now,
                traceparent=tracing.current_traceparent(),
            )
            recipient.note(mail_key)
            self.stage(unit, mail, recipient)
        hook_key = f"hook:{attestation_id}:{what}"
        if self._has_webhook(unit, recipient.exam_center) and not recipient.knows(hook_key):
            hook = Notification(
                delivery_key=hook_key,
                channel="webhook",
                candidate_number=recipient.candidate_number,
                exam_center=recipient.exam_center,
                attestation_id=attestation_id,
                payload={"type": event.type, "timestamp": now, "data": data},
                queued_at=now,
                traceparent=tracing.current_traceparent(),
            )
            recipient.note(hook_key)
            self.stage(unit, hook, recipient)

    def _has_webhook(self, unit: ProcessingEvent[UUID], exam_center: str) -> bool:
        # Looked up once per center and batch: centers change their webhook rarely.
        memo: dict[str, bool] = unit.saved_kwargs.setdefault("webhooks", {})
        if exam_center not in memo:
            memo[exam_center] = self.exists(Webhook.create_id(exam_center))
        return memo[exam_center]

    def before_commit(self, unit: ProcessingEvent[UUID]) -> None:
        unit.saved_kwargs.pop("webhooks", None)
        for aggregate in unit.aggregates.values():
            if isinstance(aggregate, Recipient):
                aggregate.flush()

    # --- commands ----------------------------------------------------------------------------

    def register_webhook(self, exam_center: str, url: str) -> tuple[Webhook, str]:
        """(webhook, secret): the secret is returned here once, to be shown once."""
        secret = new_secret()
        webhook = self.get_optional(Webhook.create_id(exam_center), Webhook)
        if webhook is None:
            webhook = Webhook(exam_center=exam_center, url=url, secret=secret, at=_now())
        else:
            webhook.replace(url=url, secret=secret, at=_now())
        self.save(webhook)
        return webhook, secret

    def webhook(self, exam_center: str) -> Webhook | None:
        return self.get_optional(Webhook.create_id(exam_center), Webhook)

    def replay(self, exam_center: str, delivery_key: str) -> Notification | None:
        found = self.notification(delivery_key)
        if found is None or found.exam_center != exam_center:
            return None
        if found.state in ("gave_up", "failed"):
            found.replay(at=_now())
            self.save(found)
        return found

    # --- queries -----------------------------------------------------------------------------

    def notification(self, delivery_key: str) -> Notification | None:
        return self.get_optional(Notification.create_id(delivery_key), Notification)

    def notifications_of(
        self, exam_center: str, candidate_number: str
    ) -> list[Notification] | None:
        recipient = self.get_optional(Recipient.create_id(candidate_number), Recipient)
        if recipient is None or recipient.exam_center != exam_center:
            return None
        found = [self.notification(k) for k in recipient.delivery_keys]
        return [n for n in found if n is not None]

    def authenticate_center(self, key: str) -> str | None:
        return centers.authenticate(self, key)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def view(n: Notification) -> dict[str, Any]:
    return {
        "delivery_key": n.delivery_key,
        "channel": n.channel,
        "candidate_number": n.candidate_number,
        "attestation_id": n.attestation_id,
        "event": n.payload.get("event") or n.payload.get("type"),
        "state": n.state,
        "attempts": n.attempts,
        "queued_at": n.queued_at,
        "sent_at": n.sent_at,
        "last_error": n.last_error,
        "history": n.history,
    }
