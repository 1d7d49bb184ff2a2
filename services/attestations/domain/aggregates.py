"""Aggregates of the attestations service.

Per issued attestation exactly one stored event (``Attestation.Issued``: verifiable and
revocable on its own id); per candidate and registry decision one ``Holder.DecisionAttested``
listing what the decision issued and revoked (what is published, as one message); the
status-list allocator of a partition reserves positions in memory over a consumer batch and
writes one event when the batch commits (``flush``).
"""

from __future__ import annotations

import base64
import secrets
from functools import lru_cache
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

NAMESPACE = UUID("0b7c4f9e-2d51-4c8a-8f3e-6a1d9e2b5c70")
STATUS_LIST_SIZE = 131072  # the W3C minimum: herd privacy for every holder


class Attestation(Aggregate):
    Issued: ClassVar[type[Aggregate.Created]]
    Revoked: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(public_id: str) -> UUID:
        """The public id is the aggregate id's 128 random bits, base64url-encoded."""
        return UUID(bytes=base64.urlsafe_b64decode(public_id + "=="))

    @staticmethod
    def new_public_id() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()

    @classmethod
    def issued(cls, **fields: Any) -> Aggregate.Created:
        """The Issued event alone, without materialising the aggregate: issuing in bulk only
        stores events, and this skips the decorator machinery (a third of the cost)."""
        return cls.Issued(
            originator_id=cls.create_id(fields["public_id"]),
            originator_version=1,
            timestamp=cls.Issued.create_timestamp(),
            originator_topic=_ATTESTATION_TOPIC,
            **fields,
        )

    @event("Issued")
    def __init__(
        self,
        public_id: str,
        kind: str,
        code: str,
        title: str,
        certification: str,
        candidate_number: str,
        exam_center: str,
        holder: dict[str, Any],
        source_id: str,
        status_list: int,
        status_index: int,
        kid: str,
        credential: str,
        issued_at: str,
        # What the jury decided (recorded since 2026-12; older attestations lack them):
        awarded_on: str | None = None,  # ISO date of the jury's decision
        route: str | None = None,  # "exam", "vae" or "carried_over"
        session: str | None = None,  # "2026-06"
        grade_session: str | None = None,  # the earlier session of a carried-over grade
        mention: str | None = None,  # the mention's code in the referential (diploma only)
        exam_center_name: str | None = None,  # only when the candidate wants it shown
    ) -> None:
        self.public_id = public_id
        self.kind = kind
        self.code = code
        self.title = title
        self.certification = certification
        self.candidate_number = candidate_number
        self.exam_center = exam_center
        self.holder = holder
        self.source_id = source_id
        self.status_list = status_list
        self.status_index = status_index
        self.kid = kid
        self.credential = credential
        self.issued_at = issued_at
        self.awarded_on = awarded_on
        self.route = route
        self.session = session
        self.grade_session = grade_session
        self.mention = mention
        self.exam_center_name = exam_center_name
        self.revoked_at: str | None = None
        self.revocation_reason: str | None = None
        self.superseded_by: str | None = None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at else "valid"

    def revoke(self, reason: str, at: str) -> bool:
        """Revoke once; a second revocation changes nothing (False)."""
        if self.revoked_at is not None:
            return False
        # The event names the attestation fully, so it can be published on its own.
        self._revoked(
            reason=reason,
            at=at,
            public_id=self.public_id,
            kind=self.kind,
            code=self.code,
            title=self.title,
            certification=self.certification,
            candidate_number=self.candidate_number,
            exam_center=self.exam_center,
        )
        return True

    @event("Revoked")
    def _revoked(
        self,
        reason: str,
        at: str,
        public_id: str,
        kind: str,
        code: str,
        candidate_number: str,
        exam_center: str,
        title: str | None = None,  # recorded since 2026-12
        certification: str | None = None,
    ) -> None:
        self.revoked_at = at
        self.revocation_reason = reason

    def supersede(self, by: str) -> None:
        if self.superseded_by is None:
            self._superseded(by=by)

    @event("Superseded")
    def _superseded(self, by: str) -> None:
        self.superseded_by = by


_ATTESTATION_TOPIC = "services.attestations.domain.aggregates:Attestation"


class Holder(Aggregate):
    """A candidate as the attestations service knows it, and the attestations issued to them.

    Identified by the exam center and the candidate number (numbers are unique per center's
    numbering authority, not nationally). Holders recorded before 2026-12 are keyed by the
    number alone (``legacy_id``); lookups try both and check the center."""

    DecisionAttested: ClassVar[type[Aggregate.Event]]
    LinksRevoked: ClassVar[type[Aggregate.Event]]

    @staticmethod
    @lru_cache(maxsize=65536)
    def create_id(exam_center: str, candidate_number: str) -> UUID:
        return uuid5(NAMESPACE, f"holder:{exam_center}:{candidate_number}")

    @staticmethod
    def legacy_id(candidate_number: str) -> UUID:
        return uuid5(NAMESPACE, f"holder:{candidate_number}")

    @event("Registered")
    def __init__(
        self,
        candidate_number: str,
        exam_center: str,
        given_names: list[str],
        family_name: str,
        birth_name: str | None,
        email: str,
        access_route: str,
        certification: str,
        exam_center_name: str | None = None,  # set only if to be shown; since 2026-12
        preferred_language: str = "fr",  # of the candidate's e-mails; since 2027-01
    ) -> None:
        self.candidate_number = candidate_number
        self.exam_center = exam_center
        self.given_names = given_names
        self.family_name = family_name
        self.birth_name = birth_name
        self.email = email
        self.access_route = access_route
        self.certification = certification
        self.exam_center_name = exam_center_name
        self.preferred_language = preferred_language
        self.attestations: dict[str, dict[str, str]] = {}  # source_id -> {public_id, kind, code}

    def attested(self, source_id: str) -> str | None:
        found = self.attestations.get(source_id)
        return found["public_id"] if found else None

    def latest_for(self, kind: str, code: str) -> str | None:
        latest = None
        for entry in self.attestations.values():
            if entry["kind"] == kind and entry["code"] == code:
                latest = entry["public_id"]
        return latest

    def attest_decision(
        self,
        decision_id: str,
        decision: str,
        decided_on: str,
        issued: list[dict[str, Any]],
        revoked: list[dict[str, Any]],
        at: str,
    ) -> None:
        """What one registry decision issued and revoked for this holder. The event names
        the holder fully, so it can be published on its own."""
        self._decision_attested(
            decision_id=decision_id,
            decision=decision,
            decided_on=decided_on,
            issued=issued,
            revoked=revoked,
            at=at,
            candidate_number=self.candidate_number,
            exam_center=self.exam_center,
            certification=self.certification,
            given_names=self.given_names,
            family_name=self.family_name,
            links_epoch=self.links_epoch,
            preferred_language=self.preferred_language,
        )

    @event("DecisionAttested")
    def _decision_attested(
        self,
        decision_id: str,
        decision: str,
        decided_on: str,
        issued: list[dict[str, Any]],
        revoked: list[dict[str, Any]],
        at: str,
        candidate_number: str,
        exam_center: str,
        certification: str,
        given_names: list[str],
        family_name: str,
        links_epoch: int = 0,  # absent from events recorded before 2026-12
        preferred_language: str = "fr",  # absent before 2027-01
    ) -> None:
        for entry in issued:
            self.attestations[entry["source_id"]] = {
                "source_id": entry["source_id"],
                "public_id": entry["public_id"],
                "kind": entry["kind"],
                "code": entry["code"],
            }

    @event("Indexed")
    def _indexed(self, entries: list[dict[str, str]]) -> None:
        # Written before 2026-12 (one index event per consumer batch): replayed, never written.
        for entry in entries:
            self.attestations[entry["source_id"]] = entry

    def public_ids(self) -> list[str]:
        return [e["public_id"] for e in self.attestations.values()]

    @property
    def links_epoch(self) -> int:
        """How many times the candidate's personal links were revoked: a download token opens
        something only if minted for the current epoch."""
        return getattr(self, "_links_epoch", 0)  # holders recorded before 2026-12 lack it

    def revoke_links(
        self, by: str, at: str, send_new_links: bool, valid: list[dict[str, str]]
    ) -> None:
        """Every personal link sent so far stops working. ``valid`` (the attestations in force,
        when new links are to be sent) travels with the event so it can be published alone."""
        self._links_revoked(
            by=by,
            at=at,
            epoch=self.links_epoch + 1,
            send_new_links=send_new_links,
            valid=valid if send_new_links else [],
            candidate_number=self.candidate_number,
            exam_center=self.exam_center,
            certification=self.certification,
            preferred_language=self.preferred_language,
        )

    @event("LinksRevoked")
    def _links_revoked(
        self,
        by: str,
        at: str,
        epoch: int,
        send_new_links: bool,
        valid: list[dict[str, str]],
        candidate_number: str,
        exam_center: str,
        certification: str,
        preferred_language: str = "fr",  # absent before 2027-01
    ) -> None:
        self._links_epoch = epoch


MAX_PARTITIONS = 256  # contracts.subjects.MAX_PARTITIONS: list numbers interleave by partition
MAX_STATUS_LIST = 2**31 - 1


class StatusAllocator(Aggregate):
    """Hands out the status-list positions of one partition, in order; lists hold
    STATUS_LIST_SIZE entries each.

    Each partition has its own lists, so partitions applied side by side never contend for
    one allocator: partition p's k-th list (k from 0) is number ``1 + p + k * MAX_PARTITIONS``.
    (Partition 0 keeps the aggregate id of the single allocator of before partitions.)"""

    LEGACY_ID: ClassVar[UUID] = uuid5(NAMESPACE, "status-allocator")

    @staticmethod
    def create_id(partition: int = 0) -> UUID:
        if partition == 0:
            return StatusAllocator.LEGACY_ID
        return uuid5(NAMESPACE, f"status-allocator:p{partition}")

    @staticmethod
    def list_owner(number: int) -> tuple[int, int]:
        """(partition, k) of list ``number``."""
        return (number - 1) % MAX_PARTITIONS, (number - 1) // MAX_PARTITIONS

    @event("Started")
    def __init__(self, list_size: int, partition: int = 0) -> None:
        self.list_size = list_size
        self.partition = partition
        self.next_index = 0
        self._reserved = 0

    def reserve(self) -> tuple[int, int]:
        """(list number, index in that list)."""
        position = self.next_index + self._reserved
        self._reserved += 1
        nth, index = divmod(position, self.list_size)
        return 1 + self.partition + nth * MAX_PARTITIONS, index

    def flush(self) -> None:
        if self._reserved:
            upto, self._reserved = self.next_index + self._reserved, 0
            self._reserved_upto(upto=upto)

    @event("Reserved")
    def _reserved_upto(self, upto: int) -> None:
        self.next_index = upto


class StatusList(Aggregate):
    """Which positions of one Bitstring Status List are set (revoked)."""

    @staticmethod
    def create_id(number: int) -> UUID:
        return uuid5(NAMESPACE, f"status-list:{number}")

    @event("Opened")
    def __init__(self, number: int, size: int) -> None:
        self.number = number
        self.size = size
        self.revoked: list[int] = []

    @event("IndexRevoked")
    def revoke(self, index: int) -> None:
        self.revoked.append(index)
