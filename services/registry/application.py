"""The registry application: each command loads aggregates, applies the domain rules, saves.

Synchronous (eventsourcing is); the HTTP layer runs it in a worker thread.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from contracts.api_keys import uai_of
from contracts.referential import Certification, load_certification
from contracts.text import text_problem
from services.registry.domain import ids
from services.registry.domain.candidate import Candidate
from services.registry.domain.deliberation import Deliberation
from services.registry.domain.errors import (
    ConflictingState,
    DomainError,
    LineError,
    RuleViolation,
    UnknownEntity,
)
from services.registry.domain.exam_center import ExamCenter
from services.registry.domain.jury import Member, check_jury, lacks_private_teacher
from services.registry.domain.marks import parse_mark
from services.registry.domain.person import Person
from services.registry.domain.pv import (
    CANDIDATE_NUMBER,
    LineProblem,
    PvLine,
    check_candidate_number,
    parse_lines,
)
from services.registry.domain.records import ResultLine
from services.registry.domain.requests import IdempotentRequest
from services.registry.domain.sessions import check_date_in_window, check_in_window
from services.runtime.store import ServiceApplication

log = logging.getLogger(__name__)

UAI = re.compile(r"^[0-9]{7}[A-Z]$")  # 3 for the département, 4 digits, a check letter
CENTER_NAME_MAX = 200

# A concurrent write to the same candidate makes the save fail; reloading and re-deciding is
# always safe because every command is recomputed from the stored state. Random waits keep
# racing writers from meeting again; past the last attempt the API answers 503 + Retry-After.
_retry_on_conflict = retry(
    retry=retry_if_exception_type(IntegrityError),
    stop=stop_after_attempt(8),
    wait=wait_random(0.005, 0.05),
    reraise=True,
)


class LinesRejected(Exception):
    """One or more PV lines are wrong; nothing was recorded."""

    def __init__(self, problems: Sequence[LineProblem]) -> None:
        super().__init__(f"{len(problems)} ligne(s) refusée(s)")
        self.problems = list(problems)


@dataclass(frozen=True)
class Receipt:
    """A command's answer; ``created`` False when an Idempotency-Key replayed it."""

    created: bool
    body: dict[str, Any]


DeliberationReceipt = Receipt


class RegistryApp(ServiceApplication):
    name = "Registry"

    # --- referential ----------------------------------------------------------------------

    @staticmethod
    def certification(code: str) -> Certification:
        try:
            return load_certification(code)
        except KeyError:
            raise UnknownEntity(f"Certification inconnue : {code}.") from None

    # --- exam centers and keys ------------------------------------------------------------

    def add_center(self, uai: str, name: str) -> ExamCenter:
        uai = uai.strip().upper()
        if not UAI.match(uai):
            raise RuleViolation(f"UAI invalide : {uai[:20]!r} (7 chiffres et une lettre).")
        name = " ".join(name.split())
        if not 1 <= len(name) <= CENTER_NAME_MAX or text_problem(name):
            raise RuleViolation(f"Nom de centre invalide (1 à {CENTER_NAME_MAX} caractères).")
        if self.get_optional(ids.exam_center_id(uai), ExamCenter) is not None:
            raise ConflictingState(f"Le centre {uai} existe déjà.")
        center = ExamCenter(uai=uai, name=name)
        self.save(center)
        return center

    def center(self, uai: str) -> ExamCenter:
        center = self.get_optional(ids.exam_center_id(uai), ExamCenter)
        if center is None:
            raise UnknownEntity(f"Centre d'examen inconnu : {uai}.")
        return center

    def issue_key(self, uai: str) -> str:
        center = self.center(uai.upper())
        key = center.issue_key(issued_at=_now())
        self.save(center)
        return key

    def revoke_key(self, uai: str, key_id: str) -> None:
        center = self.center(uai.upper())
        center.revoke_key(key_id)
        self.save(center)

    def authenticate(self, key: str) -> str | None:
        """The UAI of the center owning this active key, or None."""
        uai = uai_of(key)
        if uai is None:
            return None
        center = self.get_optional(ids.exam_center_id(uai), ExamCenter)
        if center is None or not center.accepts(key):
            return None
        return center.uai

    # --- candidates -----------------------------------------------------------------------

    @_retry_on_conflict
    def register_candidate(
        self, center: str, identity: Mapping[str, Any]
    ) -> tuple[bool, Candidate]:
        """(created, candidate); registering the same candidate again changes nothing.

        The number is the center's own: another center's candidate with the same number is
        another person, and nothing about it is revealed (no conflict, no difference)."""
        self.certification(identity["certification"])
        number = check_candidate_number(identity["candidate_number"])
        existing = self._find_candidate(center, number)
        if existing is not None:
            if existing.same_identity(dict(identity)):
                added = existing.cpf_additions(dict(identity))
                if added:  # the CPF fields a first registration lacked
                    existing.add_cpf_details(added)
                    self.save(existing)
                return False, existing
            raise ConflictingState(
                f"Le numéro de candidat {number} est déjà inscrit par ce centre avec une autre "
                "identité ; pour une erreur matérielle, contactez le service des examens."
            )
        # The center's name travels with the registration, for the attestations that show it.
        known = self.get_optional(ids.exam_center_id(center), ExamCenter)
        name = known.name if known is not None and identity.get("show_exam_center") else None
        candidate = Candidate(exam_center=center, exam_center_name=name, **identity)
        self.save(candidate, *self._link_person(candidate))  # a race: retried, see above
        return True, candidate

    def _link_person(self, candidate: Candidate) -> list[Person]:
        """The INE's person record, linking this candidate (saved with it), if an INE is given."""
        if not candidate.ine:
            return []
        person = self.get_optional(Person.create_id(candidate.ine), Person)
        if person is None:
            person = Person(ine=candidate.ine, birth_date=candidate.birth_date)
        person.claim(
            candidate.exam_center, candidate.candidate_number, candidate.birth_date, at=_now()
        )
        return [person] if person.pending_events else []

    def person(self, ine: str) -> Person | None:
        """Operator view of an INE's links (never shown to a center)."""
        return self.get_optional(Person.create_id(ine), Person)

    def _find_candidate(self, center: str, number: str) -> Candidate | None:
        return self.find_owned(
            None,
            ids.candidate_id(center, number),
            ids.legacy_candidate_id(number),
            Candidate,
            center,
        )

    def candidate(self, center: str, number: str) -> Candidate:
        found = self._find_candidate(center, number) if CANDIDATE_NUMBER.fullmatch(number) else None
        if found is None:
            # Another center's candidate is "unknown" here: existence is not disclosed.
            raise UnknownEntity(f"Candidat {number[:32]} inconnu pour ce centre.")
        return found

    def candidate_history(self, candidate: Candidate) -> list[Any]:
        return list(self.events.get(candidate.id))

    # --- deliberations --------------------------------------------------------------------

    @_retry_on_conflict
    def record_deliberation(
        self,
        center: str,
        *,
        certification: str,
        session: str,
        deliberated_on: date,
        jury: Mapping[str, Any],
        rows: Sequence[tuple[int, Mapping[str, Any]]],
        idempotency_key: str | None,
        request_digest: str,
        former_digest: str | None = None,
    ) -> DeliberationReceipt:
        cert = self.certification(certification)
        if idempotency_key:
            deliberation_uuid = ids.deliberation_id(center, idempotency_key)
            replay = self._replay(deliberation_uuid, request_digest, former_digest)
            if replay is not None:
                return replay
        else:
            deliberation_uuid = uuid4()
        check_in_window(session, cert.valid_from, cert.valid_until, cert.code)
        check_date_in_window(deliberated_on, cert.valid_from, date.max, cert.code)
        members = _members(jury)
        check_jury(members, bool(jury.get("absence_exception")))

        lines, problems = parse_lines(cert, rows)
        by_candidate: dict[str, list[PvLine]] = defaultdict(list)
        for line in lines:
            by_candidate[line.candidate_number].append(line)
        deliberation_ref = str(deliberation_uuid)
        candidates: list[Candidate] = []
        validated = 0
        for number, its_lines in by_candidate.items():
            candidate = self._find_candidate(center, number)
            if candidate is None:
                problems += [
                    LineProblem(
                        line.number, "candidate_number", f"candidat {number} inconnu pour ce centre"
                    )
                    for line in its_lines
                ]
                continue
            if candidate.certification != cert.code:
                problems += [
                    LineProblem(
                        line.number,
                        "candidate_number",
                        f"le candidat {number} est inscrit à {candidate.certification}",
                    )
                    for line in its_lines
                ]
                continue
            results, line_problems = _result_lines(
                cert, candidate, its_lines, session, deliberated_on, deliberation_ref
            )
            if line_problems:
                problems += line_problems
                continue
            try:
                candidate.record_results(
                    cert,
                    deliberation_id=deliberation_ref,
                    session=session,
                    deliberated_on=deliberated_on.isoformat(),
                    lines=results,
                )
            except LineError as error:
                problems += [
                    LineProblem(line.number, error.field, error.message) for line in its_lines
                ]
                continue
            validated += sum(1 for r in results if r.mark.validates)
            candidates.append(candidate)
        if problems:
            raise LinesRejected(sorted(problems, key=lambda p: (p.line, p.field)))

        deliberation = Deliberation(
            deliberation_id=deliberation_ref,
            exam_center=center,
            certification=cert.code,
            session=session,
            deliberated_on=deliberated_on.isoformat(),
            jury=dict(jury),
            private_teacher_missing=lacks_private_teacher(members),
            idempotency_key=idempotency_key,
            request_digest=request_digest,
            line_count=len(lines),
            validated_count=validated,
            candidate_numbers=sorted(by_candidate),
        )
        try:
            self.save(deliberation, *candidates)
        except IntegrityError:
            if idempotency_key:
                replay = self._replay(deliberation_uuid, request_digest, former_digest)
                if replay is not None:
                    return replay
            raise
        return DeliberationReceipt(True, deliberation.receipt())

    def _replay(
        self, deliberation_uuid: UUID, request_digest: str, former_digest: str | None = None
    ) -> DeliberationReceipt | None:
        existing = self.get_optional(deliberation_uuid, Deliberation)
        if existing is None:
            return None
        # PVs recorded before 2026-12 kept the digest of the raw body (``former_digest``).
        if existing.request_digest not in (request_digest, former_digest):
            raise ConflictingState(
                "Cette clé d'idempotence a déjà servi pour un autre procès-verbal."
            )
        return DeliberationReceipt(False, existing.receipt())

    def deliberation(self, center: str, deliberation_id: str) -> Deliberation:
        try:
            found = self.get_optional(UUID(deliberation_id), Deliberation)
        except ValueError:
            found = None
        if found is None or found.exam_center != center:
            raise UnknownEntity(f"Délibération {deliberation_id} inconnue pour ce centre.")
        return found

    # --- VAE ------------------------------------------------------------------------------

    @_retry_on_conflict
    def record_vae_decision(
        self,
        center: str,
        *,
        candidate_number: str,
        certification: str,
        decided_on: date,
        decision: str,
        blocs: Sequence[str],
        jury: Mapping[str, Any],
        idempotency_key: str | None = None,
        request_digest: str = "",
    ) -> Receipt:
        def decide() -> tuple[Candidate, dict[str, Any]]:
            cert = self.certification(certification)
            check_date_in_window(decided_on, cert.valid_from, cert.valid_until, cert.code)
            members = _members(jury)
            check_jury(members, bool(jury.get("absence_exception")))
            candidate = self.candidate(center, candidate_number)
            if candidate.certification != cert.code:
                raise RuleViolation(f"Le candidat est inscrit à {candidate.certification}.")
            granted = _vae_blocs(cert, decision, blocs)
            decision_id = str(uuid4())
            candidate.record_vae_decision(
                cert,
                decision_id=decision_id,
                decided_on=decided_on.isoformat(),
                decision=decision,
                blocs=granted,
                jury=dict(jury),
            )
            return candidate, {"decision_id": decision_id}

        return self._once(center, "vae-decisions", idempotency_key, request_digest, decide)

    # --- corrections ----------------------------------------------------------------------

    @_retry_on_conflict
    def correct_result(
        self,
        center: str,
        *,
        deliberation_id: str,
        candidate_number: str,
        bloc: str,
        grade: object,
        reason: str,
        idempotency_key: str | None = None,
        request_digest: str = "",
    ) -> Receipt:
        def correct() -> tuple[Candidate, dict[str, Any]]:
            deliberation = self.deliberation(center, deliberation_id)
            cert = self.certification(deliberation.certification)
            if cert.bloc(bloc) is None:
                raise RuleViolation(f"Bloc inconnu « {bloc} » pour la certification {cert.code}.")
            try:
                mark = parse_mark(grade)
            except LineError as error:
                raise RuleViolation(error.message[0].upper() + error.message[1:] + ".") from None
            candidate = self.candidate(center, candidate_number)
            correction_id = str(uuid4())
            candidate.correct_result(
                cert,
                correction_id=correction_id,
                result_id=ids.result_id(str(deliberation.id), candidate_number, bloc),
                mark=mark,
                reason=reason,
                corrected_on=_now()[:10],
            )
            return candidate, {
                "correction_id": correction_id,
                "acquired": sorted(candidate.acquisitions),
                "awarded": candidate.award is not None,
            }

        return self._once(center, "corrections", idempotency_key, request_digest, correct)

    # --- idempotency of the commands that change one candidate ------------------------------

    def _once(
        self,
        center: str,
        route: str,
        idempotency_key: str | None,
        digest: str,
        command: Callable[[], tuple[Candidate, dict[str, Any]]],
    ) -> Receipt:
        """Run ``command`` unless this key already answered; save its change with the answer."""
        replay = self._replayed(center, route, idempotency_key, digest)
        if replay is not None:
            return replay
        try:
            candidate, answer = command()
        except DomainError:
            # A concurrent request with this key may have committed between our look-up and
            # now: its change can make ours look wrong ("nothing to correct"). Its answer wins.
            replay = self._replayed(center, route, idempotency_key, digest)
            if replay is not None:
                return replay
            raise
        self._save_answered(candidate, center, route, idempotency_key, digest, answer)
        return Receipt(True, answer)

    def _replayed(
        self, center: str, route: str, idempotency_key: str | None, digest: str
    ) -> Receipt | None:
        if not idempotency_key:
            return None
        found = self.get_optional(
            IdempotentRequest.create_id(center, route, idempotency_key), IdempotentRequest
        )
        return None if found is None else Receipt(False, found.replay(digest))

    def _save_answered(
        self,
        candidate: Candidate,
        center: str,
        route: str,
        idempotency_key: str | None,
        digest: str,
        answer: dict[str, Any],
    ) -> None:
        """Save the candidate, and with it (one transaction) what this key answered: a
        concurrent request with the same key fails on it and is replayed by the retry."""
        if not idempotency_key:
            self.save(candidate)
            return
        request = IdempotentRequest(
            exam_center=center,
            route=route,
            idempotency_key=idempotency_key,
            digest=digest,
            answer=answer,
        )
        self.save(candidate, request)


def _members(jury: Mapping[str, Any]) -> list[Member]:
    return [
        Member(name=m["name"], role=m["role"], present=bool(m.get("present", True)))
        for m in jury.get("members", [])
    ]


def _result_lines(
    cert: Certification,
    candidate: Candidate,
    lines: Sequence[PvLine],
    session: str,
    deliberated_on: date,
    deliberation_ref: str,
) -> tuple[list[ResultLine], list[LineProblem]]:
    group = str(candidate.candidate_group)
    results: list[ResultLine] = []
    problems: list[LineProblem] = []
    for line in lines:
        bloc = cert.bloc(line.bloc)
        assert bloc is not None
        expected = (bloc.modalities or {}).get(group)  # type: ignore[call-overload]
        modality = line.modality or expected
        if line.modality and expected and line.modality != expected:
            problems.append(
                LineProblem(
                    line.number,
                    "modality",
                    f"modalité {line.modality} différente de celle du référentiel pour un "
                    f"candidat du groupe {group} ({expected})",
                )
            )
            continue
        results.append(
            ResultLine(
                result_id=ids.result_id(deliberation_ref, candidate.candidate_number, line.bloc),
                bloc=line.bloc,
                session=session,
                mark=line.mark,
                modality=modality,
                deliberation_id=deliberation_ref,
                deliberated_on=deliberated_on.isoformat(),
                justification=line.justification,
            )
        )
    return results, problems


def _vae_blocs(cert: Certification, decision: str, blocs: Sequence[str]) -> list[str]:
    if decision == "totale":
        if blocs:
            raise RuleViolation("Une validation totale ne liste pas de blocs.")
        return [b.code for b in cert.mandatory_blocs]
    if decision == "refus":
        if blocs:
            raise RuleViolation("Un refus ne valide aucun bloc : la liste doit être vide.")
        return []
    if not blocs:
        raise RuleViolation("Une validation partielle doit nommer les blocs validés.")
    unknown = [b for b in blocs if cert.bloc(b) is None]
    if unknown:
        raise RuleViolation(f"Bloc(s) inconnu(s) pour {cert.code} : {', '.join(unknown)}.")
    if len(set(blocs)) != len(blocs):
        raise RuleViolation("Un bloc est cité deux fois dans la décision.")
    return list(blocs)


def _now() -> str:
    return datetime.now(UTC).isoformat()
