"""The notifications application: queues a notification for every attestation event (an
e-mail to the candidate, a webhook to the exam center if it registered one), atomically with
the upstream position; the dispatcher sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from contracts.attestations_v1 import AttestationIssued, AttestationRevoked
from contracts.envelope import CloudEvent
from contracts.referential import load_certification
from contracts.registry_v1 import CandidateRegistered
from services.notifications.domain import Notification, Recipient, Webhook
from services.notifications.webhooks import new_secret
from services.runtime import centers, tokens, tracing
from services.runtime.messages import HandlerTable, Unit
from services.runtime.store import ServiceApplication

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

    def registry_handlers(self) -> HandlerTable:
        table = HandlerTable("registry").on(CandidateRegistered, self._on_registered)
        return centers.handle_key_events(self, table)

    def attestations_handlers(self) -> HandlerTable:
        return (
            HandlerTable("attestations")
            .on(AttestationIssued, self._on_issued)
            .on(AttestationRevoked, self._on_revoked)
        )

    def recipient(self, unit: Unit | None, exam_center: str, number: str) -> Recipient | None:
        return self.find_owned(
            unit,
            Recipient.create_id(exam_center, number),
            Recipient.legacy_id(number),
            Recipient,
            exam_center,
        )

    def _on_registered(self, data: CandidateRegistered, _: CloudEvent, unit: Unit) -> None:
        if self.recipient(unit, data.exam_center, data.candidate_number) is not None:
            return
        recipient = Recipient(
            candidate_number=data.candidate_number,
            exam_center=data.exam_center,
            email=data.email,
            given_names=list(data.given_names),
            family_name=data.usage_name or data.birth_name,
        )
        self.stage(unit, recipient)

    def _on_issued(self, data: AttestationIssued, event: CloudEvent, unit: Unit) -> None:
        recipient = self._recipient_of(unit, data.exam_center, data.candidate_number)
        token = tokens.mint(
            self.download_secret,
            tokens.holder_subject(recipient.exam_center, recipient.candidate_number),
            DOWNLOAD_LINK_TTL,
        )
        base = f"{self.attestations_url}/v1/attestations/{data.attestation_id}"
        mail = {
            "event": "issued",
            "kind": data.kind,
            "code": data.code,
            "title": data.title,
            "certification": data.certification,
            "certification_title": data.certification_title
            or certification_title(data.certification),
            "verify_url": data.verify_url,
            "download_url": f"{base}/pdf?token={token}",
            "credential_url": f"{base}/credential?token={token}",
            "reason": None,
        }
        self._queue(unit, recipient, data.attestation_id, "issued", mail, event, data)

    def _on_revoked(self, data: AttestationRevoked, event: CloudEvent, unit: Unit) -> None:
        recipient = self._recipient_of(unit, data.exam_center, data.candidate_number)
        mail = {
            "event": "revoked",
            "kind": data.kind,
            "code": data.code,
            "title": data.title or data.code,
            "certification": data.certification or "",
            "certification_title": data.certification_title
            or certification_title(data.certification or ""),
            "verify_url": data.verify_url,
            "download_url": None,
            "credential_url": None,
            "reason": data.reason,
        }
        self._queue(unit, recipient, data.attestation_id, "revoked", mail, event, data)

    def _recipient_of(self, unit: Unit, exam_center: str, number: str) -> Recipient:
        recipient = self.recipient(unit, exam_center, number)
        if recipient is None:
            # Another stream: the registry's consumer may not have caught up yet. Retried.
            raise UnknownRecipient(f"{exam_center}/{number}")
        return recipient

    def _queue(
        self,
        unit: Unit,
        recipient: Recipient,
        attestation_id: str,
        what: str,
        mail: dict[str, Any],
        event: CloudEvent,
        data: AttestationIssued | AttestationRevoked,
    ) -> None:
        """Queue the e-mail to the candidate and, if the center has one, the webhook."""
        now = _now()
        mail_key = f"mail:{attestation_id}:{what}"
        if not recipient.knows(mail_key):
            notification = Notification(
                delivery_key=mail_key,
                channel="email",
                candidate_number=recipient.candidate_number,
                exam_center=recipient.exam_center,
                attestation_id=attestation_id,
                payload={
                    **mail,
                    "to_address": recipient.email,
                    "holder_name": recipient.display_name,
                },
                queued_at=now,
                traceparent=tracing.current_traceparent(),
            )
            recipient.note(mail_key)
            self.stage(unit, notification, recipient)
        hook_key = f"hook:{attestation_id}:{what}"
        if self._has_webhook(unit, recipient.exam_center) and not recipient.knows(hook_key):
            hook = Notification(
                delivery_key=hook_key,
                channel="webhook",
                candidate_number=recipient.candidate_number,
                exam_center=recipient.exam_center,
                attestation_id=attestation_id,
                payload={
                    "type": event.type,
                    "timestamp": now,
                    "data": data.model_dump(mode="json"),
                },
                queued_at=now,
                traceparent=tracing.current_traceparent(),
            )
            recipient.note(hook_key)
            self.stage(unit, hook, recipient)

    def _has_webhook(self, unit: Unit, exam_center: str) -> bool:
        # Looked up once per center and batch: centers change their webhook rarely.
        memo: dict[str, bool] = unit.saved_kwargs.setdefault("webhooks", {})
        if exam_center not in memo:
            memo[exam_center] = self.exists(Webhook.create_id(exam_center))
        return memo[exam_center]

    def before_commit(self, unit: Unit) -> None:
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
        recipient = self.recipient(None, exam_center, candidate_number)
        if recipient is None:
            return None
        found = [self.notification(k) for k in recipient.delivery_keys]
        return [n for n in found if n is not None]

    def authenticate_center(self, key: str) -> str | None:
        return centers.authenticate(self, key)


def _now() -> str:
    return datetime.now(UTC).isoformat()


@cache
def certification_title(code: str) -> str:
    """The certification's title from the referential (events before 2026-12 carry only its
    code); the code itself if no referential holds it."""
    try:
        return load_certification(code).title
    except KeyError:
        return code


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
