"""The attestations application: issues and revokes attestations from the registry's events,
answers verification queries. Synchronous (eventsourcing); the HTTP layer runs it in threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from contracts import registry_v1 as v1
from contracts.envelope import CloudEvent
from contracts.referential import Certification, load_certification
from services.attestations.domain import credential as vc
from services.attestations.domain.aggregates import (
    STATUS_LIST_SIZE,
    Attestation,
    Holder,
    StatusAllocator,
    StatusList,
)
from services.attestations.domain.jose import SigningKey, sign
from services.runtime import centers
from services.runtime.messages import HandlerTable, Rejected, Unit
from services.runtime.store import ServiceApplication

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Links:
    """Where the service is published: builds every URL that goes into a credential."""

    base_url: str

    def verify(self, public_id: str) -> str:
        return f"{self.base_url}/v/{public_id}"

    def status_list(self, number: int) -> str:
        return f"{self.base_url}/v1/status-lists/{number}"


class AttestationsApp(ServiceApplication):
    name = "Attestations"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        issuer: vc.IssuerProfile,
        links: Links,
        signing_key: Callable[[], SigningKey],
    ) -> None:
        super().__init__(env)
        self.issuer = issuer
        self.links = links
        self.signing_key = signing_key
        self._status_cache: dict[int, tuple[int, str]] = {}
        self._status_lock = threading.Lock()

    # --- consuming the registry's events (one call per event, inside a batch) --------------

    def registry_handlers(self) -> HandlerTable:
        """What this service does with each event type of the registry's stream."""
        table = (
            HandlerTable("registry")
            .on(v1.CandidateRegistered, self._on_registered)
            .on(v1.BlocValidated, self._on_bloc_validated)
            .on(v1.CertificationAwarded, self._on_awarded)
            .on(v1.BlocValidationWithdrawn, self._on_bloc_withdrawn)
            .on(v1.CertificationAwardWithdrawn, self._on_award_withdrawn)
        )
        return centers.handle_key_events(self, table)

    def _on_registered(self, data: v1.CandidateRegistered, _: CloudEvent, unit: Unit) -> None:
        if self._find_holder(unit, data.exam_center, data.candidate_number) is not None:
            return
        family = data.usage_name or data.birth_name
        holder = Holder(
            candidate_number=data.candidate_number,
            exam_center=data.exam_center,
            given_names=list(data.given_names),
            family_name=family,
            birth_name=data.birth_name if family != data.birth_name else None,
            email=data.email,
            access_route=data.access_route,
            certification=data.certification,
        )
        self.stage(unit, holder)

    def _on_bloc_validated(self, data: v1.BlocValidated, event: CloudEvent, unit: Unit) -> None:
        cert = _certification(data.certification)
        if not cert.grants_bloc_attestations(data.access_route):
            return
        holder = self._holder(unit, data.exam_center, data.candidate_number)
        achievement = bloc_achievement(data.certification, data.bloc)
        self._issue(unit, holder, achievement, data.validation_id, event.time)

    def _on_awarded(self, data: v1.CertificationAwarded, event: CloudEvent, unit: Unit) -> None:
        _certification(data.certification)
        holder = self._holder(unit, data.exam_center, data.candidate_number)
        achievement = certification_achievement(data.certification)
        self._issue(unit, holder, achievement, data.award_id, event.time)

    def _on_bloc_withdrawn(
        self, data: v1.BlocValidationWithdrawn, _: CloudEvent, unit: Unit
    ) -> None:
        holder = self._holder(unit, data.exam_center, data.candidate_number)
        self._revoke(unit, holder, data.validation_id, data.reason)

    def _on_award_withdrawn(
        self, data: v1.CertificationAwardWithdrawn, _: CloudEvent, unit: Unit
    ) -> None:
        holder = self._holder(unit, data.exam_center, data.candidate_number)
        self._revoke(unit, holder, data.award_id, data.reason)

    def before_commit(self, unit: Unit) -> None:
        """Write what was accumulated over the batch: one event per holder and allocator."""
        for aggregate in unit.aggregates.values():
            if isinstance(aggregate, Holder | StatusAllocator):
                aggregate.flush()

    def _find_holder(self, unit: Unit | None, exam_center: str, number: str) -> Holder | None:
        return self.find_owned(
            unit,
            Holder.create_id(exam_center, number),
            Holder.legacy_id(number),
            Holder,
            exam_center,
        )

    def _holder(self, unit: Unit, exam_center: str, candidate_number: str) -> Holder:
        holder = self._find_holder(unit, exam_center, candidate_number)
        if holder is None:
            # The registry publishes candidate-registered first on the same ordered stream: if
            # it is not here, it never will be (its registration was dead-lettered).
            raise Rejected(
                f"no registration seen for candidate {candidate_number} of {exam_center} "
                "(see the dead-letter stream for its candidate-registered)"
            )
        return holder

    def _issue(
        self,
        unit: Unit,
        holder: Holder,
        achievement: vc.AchievementInfo,
        source_id: str,
        at: datetime,
    ) -> None:
        if holder.attested(source_id) is not None:
            return
        allocator = self.get_in(unit, StatusAllocator.ID, StatusAllocator)
        if allocator is None:
            allocator = StatusAllocator(list_size=STATUS_LIST_SIZE)
        list_number, index = allocator.reserve()
        public_id = Attestation.new_public_id()  # 128 random bits
        key = self.signing_key()
        credential = vc.build_credential(
            attestation_id=public_id,
            verify_url=self.links.verify(public_id),
            issuer=self.issuer,
            holder=vc.Holder(
                given_names=tuple(holder.given_names),
                family_name=holder.family_name,
                birth_name=holder.birth_name,
            ),
            achievement=achievement,
            valid_from=at,
            status=vc.StatusEntry(list_url=self.links.status_list(list_number), index=index),
        )
        previous = holder.latest_for(achievement.kind, achievement.code)
        issued = Attestation.issued(
            public_id=public_id,
            kind=achievement.kind,
            code=achievement.code,
            title=achievement.title,
            certification=achievement.certification_code,
            candidate_number=holder.candidate_number,
            exam_center=holder.exam_center,
            holder={"given_names": holder.given_names, "family_name": holder.family_name},
            source_id=source_id,
            status_list=list_number,
            status_index=index,
            kid=key.kid,
            credential=sign(credential, key),
            issued_at=at.isoformat(),
        )
        holder.note(source_id, public_id, achievement.kind, achievement.code)
        unit.events.append(issued)
        self.stage(unit, holder, allocator)
        if previous is not None:
            replaced = self.get_in(unit, Attestation.create_id(previous), Attestation)
            if replaced is not None and replaced.revoked_at is not None:
                replaced.supersede(by=public_id)
                self.stage(unit, replaced)

    def _revoke(self, unit: Unit, holder: Holder, source_id: str, reason: str) -> None:
        public_id = holder.attested(source_id)
        if public_id is None:
            return  # nothing was issued for it (the policy did not cover this candidate)
        attestation = self.get_in(unit, Attestation.create_id(public_id), Attestation)
        assert attestation is not None
        if not attestation.revoke(reason=reason, at=datetime.now(UTC).isoformat()):
            return
        status = self.get_in(unit, StatusList.create_id(attestation.status_list), StatusList)
        if status is None:
            status = StatusList(number=attestation.status_list, size=STATUS_LIST_SIZE)
        status.revoke(index=attestation.status_index)
        self.stage(unit, attestation, status)

    # --- queries ---------------------------------------------------------------------------

    def authenticate_center(self, key: str) -> str | None:
        return centers.authenticate(self, key)

    def attestation(self, public_id: str) -> Attestation | None:
        if len(public_id) != 22:
            return None
        try:
            aggregate_id = Attestation.create_id(public_id)
        except ValueError:
            return None
        return self.get_optional(aggregate_id, Attestation)

    def current_version(self, public_id: str) -> int | None:
        """The attestation's latest event version, without decoding anything (cheap)."""
        if len(public_id) != 22:
            return None
        try:
            aggregate_id = Attestation.create_id(public_id)
        except ValueError:
            return None
        latest = self.process_recorder.select_events(aggregate_id, desc=True, limit=1)
        return latest[0].originator_version if latest else None

    def holder(self, exam_center: str, candidate_number: str) -> Holder | None:
        return self._find_holder(None, exam_center, candidate_number)

    def attestations_of(self, exam_center: str, candidate_number: str) -> list[Attestation] | None:
        holder = self.holder(exam_center, candidate_number)
        if holder is None:
            return None
        found = [self.attestation(pid) for pid in holder.public_ids()]
        return [a for a in found if a is not None]

    def status_list_credential(self, number: int) -> str | None:
        """The signed Bitstring Status List credential; re-signed only when it changed."""
        allocator = self.get_optional(StatusAllocator.ID, StatusAllocator)
        if allocator is None or not 1 <= number <= allocator.next_index // STATUS_LIST_SIZE + 1:
            return None
        status = self.get_optional(StatusList.create_id(number), StatusList)
        version = status.version if status is not None else 0
        with self._status_lock:
            cached = self._status_cache.get(number)
            if cached is not None and cached[0] == version:
                return cached[1]
        revoked = status.revoked if status is not None else []
        url = self.links.status_list(number)
        credential = vc.build_status_list_credential(
            list_url=url,
            issuer=self.issuer,
            encoded_list=vc.encode_status_list(revoked, STATUS_LIST_SIZE),
            valid_from=datetime.now(UTC),
        )
        token = sign(credential, self.signing_key())
        with self._status_lock:
            self._status_cache[number] = (version, token)
        return token


def _certification(code: str) -> Certification:
    try:
        return load_certification(code)
    except KeyError:
        raise Rejected(f"no referential for certification {code}") from None


@lru_cache(maxsize=256)
def bloc_achievement(certification: str, code: str) -> vc.AchievementInfo:
    cert = _certification(certification)
    bloc = cert.bloc(code)
    if bloc is None:
        raise Rejected(f"the referential of {certification} has no bloc {code}")
    return vc.AchievementInfo(
        code=bloc.code,
        title=bloc.title,
        kind="bloc",
        competences=tuple(bloc.competences),
        certification_code=cert.code,
        certification_title=cert.title,
        level=cert.level,
    )


@lru_cache(maxsize=16)
def certification_achievement(certification: str) -> vc.AchievementInfo:
    cert = _certification(certification)
    return vc.AchievementInfo(
        code=cert.code,
        title=cert.title,
        kind="certification",
        competences=tuple(c for b in cert.mandatory_blocs for c in b.competences),
        certification_code=cert.code,
        certification_title=cert.title,
        level=cert.level,
    )
