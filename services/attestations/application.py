"""The attestations application: issues and revokes attestations from the registry's events,
answers verification queries. Synchronous (eventsourcing); the HTTP layer runs it in threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from contracts import registry_v1 as v1
from contracts.envelope import CloudEvent
from contracts.referential import Certification, load_certification
from contracts.subjects import candidate_key, partition_of
from services.attestations.domain import credential as vc
from services.attestations.domain.aggregates import (
    MAX_STATUS_LIST,
    STATUS_LIST_SIZE,
    Attestation,
    Holder,
    StatusAllocator,
    StatusList,
)
from services.attestations.domain.jose import SigningKey, sign_credential
from services.attestations.domain.sharing import HolderShares, ShareLink
from services.attestations.identity import Issuers
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
    # Read by every decision (the holder) and every batch (its partition's allocator, whose
    # history grows by one event per batch): kept between units instead of replayed.
    cached_types = (Holder, StatusAllocator)
    # A share link opened for months gains an event per OPENING_WINDOW: read from a snapshot.
    snapshotting_intervals = {ShareLink: 100, HolderShares: 100}  # noqa: RUF012  # eventsourcing's

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        issuers: Issuers,
        links: Links,
        signing_key: Callable[[], SigningKey],
        partitions: int = 1,
    ) -> None:
        super().__init__(env)
        self.partitions = partitions
        self.issuers = issuers  # the service's identity; each certification's certifier
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
            .on(v1.DecisionRecorded, self._on_decision)
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
            exam_center_name=data.exam_center_name if data.show_exam_center else None,
            preferred_language=data.preferred_language,
        )
        self.stage(unit, holder)

    def _on_decision(self, data: v1.DecisionRecorded, event: CloudEvent, unit: Unit) -> None:
        """One candidate's decision, as one unit: revoke what it withdrew, issue what it gave
        (bloc attestations where the referential's policy grants them, the certification's
        when awarded), and record it all on the holder as one event, published as one
        attestations-recorded."""
        cert = _certification(data.certification)
        holder = self._holder(unit, data.exam_center, data.candidate_number)
        reason = data.reason or "décision du jury modifiée"
        revoked = [
            r
            for source_id in (
                *(w.validation_id for w in data.withdrawn),
                *([data.award_withdrawn] if data.award_withdrawn else []),
            )
            if (r := self._revoke(unit, holder, source_id, reason)) is not None
        ]
        issued: list[dict[str, Any]] = []
        center = _shown_center(holder)
        if cert.grants_bloc_attestations(data.access_route):
            for bloc in data.validated:
                achievement = bloc_achievement(data.certification, bloc.bloc)
                facts = _bloc_facts(data, bloc, center)
                self._issue(
                    unit, holder, achievement, bloc.validation_id, event.time, issued, facts
                )
        if data.award is not None:
            achievement = certification_achievement(data.certification)
            facts = _award_facts(cert, data.award, center)
            self._issue(unit, holder, achievement, data.award.award_id, event.time, issued, facts)
        if issued or revoked:
            holder.attest_decision(
                decision_id=data.decision_id,
                decision=data.decision,
                decided_on=data.decided_on.isoformat(),
                issued=issued,
                revoked=revoked,
                at=datetime.now(UTC).isoformat(),
            )
            self.stage(unit, holder)

    def before_commit(self, unit: Unit) -> None:
        """Write the status-list positions reserved over the batch: one event per allocator."""
        for aggregate in unit.aggregates.values():
            if isinstance(aggregate, StatusAllocator):
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
        issued_so_far: list[dict[str, Any]],
        facts: vc.AwardFacts,
    ) -> None:
        """Sign one attestation (stored as its own event, verifiable on its own id) and add
        what the holder's decision event records of it to ``issued_so_far``. ``at`` (the
        event's time) is when it is issued; ``facts`` what the jury decided, and when."""
        if holder.attested(source_id) is not None:
            return
        allocator = self._allocator(unit, holder)
        list_number, index = allocator.reserve()
        public_id = Attestation.new_public_id()  # 128 random bits
        key = self.signing_key()
        credential = vc.build_credential(
            attestation_id=public_id,
            verify_url=self.links.verify(public_id),
            issuer=self.issuers.for_certification(achievement.certification_code),
            holder=vc.Holder(
                given_names=tuple(holder.given_names),
                family_name=holder.family_name,
                birth_name=holder.birth_name,
            ),
            achievement=achievement,
            valid_from=at,
            status=vc.StatusEntry(list_url=self.links.status_list(list_number), index=index),
            facts=facts,
        )
        previous = holder.latest_for(achievement.kind, achievement.code)
        attestation = Attestation.issued(
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
            credential=sign_credential(credential, key),
            issued_at=at.isoformat(),
            awarded_on=facts.awarded_on.isoformat(),
            route=facts.route,
            session=facts.session,
            grade_session=facts.grade_session,
            mention=facts.mention_code,
            exam_center_name=facts.exam_center.name if facts.exam_center else None,
        )
        unit.events.append(attestation)
        self.stage(unit, allocator)
        replaces = None
        if previous is not None:
            replaced = self.get_in(unit, Attestation.create_id(previous), Attestation)
            if replaced is not None and replaced.revoked_at is not None:
                replaced.supersede(by=public_id)
                self.stage(unit, replaced)
                replaces = previous
        issued_so_far.append(
            {
                "public_id": public_id,
                "kind": achievement.kind,
                "code": achievement.code,
                "title": achievement.title,
                "source_id": source_id,
                "replaces": replaces,
                # For the candidate's e-mail (since 2027-01).
                "route": facts.route,
                "session": facts.session,
                "grade_session": facts.grade_session,
            }
        )

    def _revoke(
        self, unit: Unit, holder: Holder, source_id: str, reason: str
    ) -> dict[str, Any] | None:
        """Revoke what ``source_id`` issued; what the decision event records of it, or None
        when nothing was issued for it (the policy did not cover this candidate) or it was
        revoked already."""
        public_id = holder.attested(source_id)
        if public_id is None:
            return None
        attestation = self.get_in(unit, Attestation.create_id(public_id), Attestation)
        assert attestation is not None
        if not attestation.revoke(reason=reason, at=datetime.now(UTC).isoformat()):
            return None
        status = self.get_in(unit, StatusList.create_id(attestation.status_list), StatusList)
        if status is None:
            status = StatusList(number=attestation.status_list, size=STATUS_LIST_SIZE)
        status.revoke(index=attestation.status_index)
        self.stage(unit, attestation, status)
        return {
            "public_id": public_id,
            "kind": attestation.kind,
            "code": attestation.code,
            "title": attestation.title,
            "reason": reason,
        }

    def _allocator(self, unit: Unit, holder: Holder) -> StatusAllocator:
        """The status-list allocator of the holder's partition: partitions are applied side by
        side (by several replicas), so none shares an allocator with another."""
        key = candidate_key(holder.exam_center, holder.candidate_number)
        partition = partition_of(key, self.partitions)
        allocator = self.get_in(unit, StatusAllocator.create_id(partition), StatusAllocator)
        if allocator is None:
            allocator = StatusAllocator(list_size=STATUS_LIST_SIZE, partition=partition)
        return allocator

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
        return self.get_optional(aggregate_id, Attestation)  # another record's id: None

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

    def revoke_links(
        self, exam_center: str, candidate_number: str, *, by: str, send_new_links: bool
    ) -> int | None:
        """Invalidate every personal link of the candidate (their new links epoch), and with
        ``send_new_links`` have the notifications service send new ones to what is in force.
        None if the candidate is unknown to this center."""
        held = self.attestations_of(exam_center, candidate_number)
        holder = self.holder(exam_center, candidate_number)
        if held is None or holder is None:
            return None
        valid = [
            {"public_id": a.public_id, "kind": a.kind, "code": a.code, "title": a.title}
            for a in sorted(held, key=lambda a: (a.issued_at, a.code))
            if a.status == "valid"
        ]
        holder.revoke_links(
            by=by, at=datetime.now(UTC).isoformat(), send_new_links=send_new_links, valid=valid
        )
        # A version conflict with a consumer writing the same holder raises IntegrityError:
        # the caller answers 409 and nothing changed.
        self.save(holder)
        with self._cache_lock:  # the consumers' copy is now behind the store
            self._cache.pop(holder.id, None)
        return holder.links_epoch

    def status_list_credential(self, number: int) -> str | None:
        """The signed Bitstring Status List credential; re-signed only when it changed."""
        if not 1 <= number <= MAX_STATUS_LIST:
            return None
        partition, nth = StatusAllocator.list_owner(number)
        allocator = self.get_optional(StatusAllocator.create_id(partition), StatusAllocator)
        if allocator is None or nth > allocator.next_index // STATUS_LIST_SIZE:
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
            issuer=self.issuers.service,
            encoded_list=vc.encode_status_list(revoked, STATUS_LIST_SIZE),
            valid_from=datetime.now(UTC),
        )
        token = sign_credential(credential, self.signing_key())
        with self._status_lock:
            self._status_cache[number] = (version, token)
        return token


def _certification(code: str) -> Certification:
    try:
        return load_certification(code)
    except KeyError:
        raise Rejected(f"no referential for certification {code}") from None


def _shown_center(holder: Holder) -> vc.ExamCenterInfo | None:
    """The exam center, when the candidate asked for it to be shown on their attestations."""
    name = holder.exam_center_name
    return vc.ExamCenterInfo(uai=holder.exam_center, name=name) if name else None


def _bloc_facts(
    data: v1.DecisionRecorded, bloc: v1.ValidatedBloc, center: vc.ExamCenterInfo | None
) -> vc.AwardFacts:
    route: vc.Route
    if bloc.via == "vae":
        route = "vae"
    elif bloc.carried_over:
        route = "carried_over"
    else:
        route = "exam"
    return vc.AwardFacts(
        awarded_on=bloc.validated_on,  # the date of the jury decision that validated it
        route=route,
        session=data.session or (bloc.session if bloc.via == "grade" else None),
        grade_session=bloc.session if route == "carried_over" else None,
        exam_center=center,
    )


def _award_facts(
    cert: Certification, award: v1.AwardDecided, center: vc.ExamCenterInfo | None
) -> vc.AwardFacts:
    return vc.AwardFacts(
        awarded_on=award.awarded_on,
        route=award.via,
        session=award.session,
        mention=mention_label(cert.code, award.mention),
        mention_code=award.mention,
        exam_center=center,
    )


def mention_label(certification: str, code: str | None) -> str | None:
    """The label the referential gives a mention code (the code itself if it has none)."""
    if code is None:
        return None
    try:
        mentions = load_certification(certification).diploma_rules.mentions
    except KeyError:
        return code
    return next((m.label for m in mentions if m.code == code), code)


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
        mentions=tuple(m.label for m in cert.diploma_rules.mentions),
    )
