"""The candidate aggregate: identity, every result line, acquired blocs, the diploma."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.referential import Certification
from services.registry.domain import decisions, ids
from services.registry.domain.errors import ConflictingState, LineError, RuleViolation
from services.registry.domain.marks import Mark
from services.registry.domain.records import Acquisition, Award, ResultLine

IDENTITY_FIELDS = (
    "birth_name",
    "usage_name",
    "given_names",
    "birth_date",
    "email",
    "certification",
    "access_route",
    "candidate_group",
    "ine",
)
# What the CPF declaration needs beyond the identity (``services.registry.cpf``). Optional at
# registration; given later by registering again, they complete the record (``CpfDetailsAdded``).
CPF_FIELDS = ("sex", "birth_insee_code", "birth_postal_code", "birth_country_code")
CPF_OUTCOMES_MAX = 100  # acknowledgements kept per candidate: a handful in real life


class Candidate(Aggregate):
    """A candidate of one exam center: identity, every result line, acquired blocs, diploma."""

    # Event classes made by @event below; declared so type checkers know them.
    Registered: ClassVar[type[Aggregate.Created]]
    ResultsRecorded: ClassVar[type[Aggregate.Event]]
    VaeDecisionRecorded: ClassVar[type[Aggregate.Event]]
    ResultCorrected: ClassVar[type[Aggregate.Event]]
    CpfDetailsAdded: ClassVar[type[Aggregate.Event]]
    CpfOutcomeRecorded: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(exam_center: str, candidate_number: str) -> UUID:
        # Numbers are unique per numbering authority (an academy's exam office), not
        # nationally: identity is scoped by the registering center, which a number unique in
        # its academy is a fortiori unique in. The same person across centers is linked by
        # INE (``Person``). Candidates recorded before 2026-12 are keyed by the number alone
        # (``ids.legacy_candidate_id``); lookups try both and check the center.
        return ids.candidate_id(exam_center, candidate_number)

    @event("Registered")
    def __init__(
        self,
        candidate_number: str,
        exam_center: str,
        birth_name: str,
        usage_name: str | None,
        given_names: list[str],
        birth_date: str,
        email: str,
        certification: str,
        access_route: str,
        candidate_group: int,
        ine: str | None,
        sex: str | None = None,
        birth_insee_code: str | None = None,
        birth_postal_code: str | None = None,
        birth_country_code: str | None = None,
        # Whether the center's name goes on the attestations, and that name (since 2026-12).
        show_exam_center: bool = False,
        exam_center_name: str | None = None,
        # The language of the candidate's e-mails (since 2027-01; "fr" before).
        preferred_language: str = "fr",
    ) -> None:
        self.candidate_number = candidate_number
        self.exam_center = exam_center
        self.birth_name = birth_name
        self.usage_name = usage_name
        self.given_names = given_names
        self.birth_date = birth_date
        self.email = email
        self.certification = certification
        self.access_route = access_route
        self.candidate_group = candidate_group
        self.ine = ine
        self.sex = sex
        self.birth_insee_code = birth_insee_code
        self.birth_postal_code = birth_postal_code
        self.birth_country_code = birth_country_code
        self.show_exam_center = show_exam_center
        self.exam_center_name = exam_center_name
        self.preferred_language = preferred_language
        self.cpf_outcomes: list[dict[str, Any]] = []
        self.results: dict[str, ResultLine] = {}
        self.acquisitions: dict[str, Acquisition] = {}
        self.award: Award | None = None

    # --- queries ---------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}

    def same_identity(self, other: dict[str, Any]) -> bool:
        return self.identity() == {name: other.get(name) for name in IDENTITY_FIELDS}

    def cpf_details(self) -> dict[str, str | None]:
        return {name: getattr(self, name, None) for name in CPF_FIELDS}

    def cpf_additions(self, other: dict[str, Any]) -> dict[str, str]:
        """The CPF fields ``other`` gives that this record lacks; a different value for one it
        has is a conflicting identity (the same rule as for the name or the birth date)."""
        added = {}
        for name, held in self.cpf_details().items():
            given = other.get(name)
            if given is None or given == held:
                continue
            if held is not None:
                raise ConflictingState(
                    f"Le numéro de candidat {self.candidate_number} est déjà inscrit par ce "
                    f"centre avec un autre « {name} » ; pour une erreur matérielle, contactez le "
                    "service des examens."
                )
            added[name] = given
        return added

    def result_in(self, session: str, bloc: str) -> ResultLine | None:
        for line in self.results.values():
            if line.session == session and line.bloc == bloc:
                return line
        return None

    # --- commands --------------------------------------------------------------------------

    def record_results(
        self,
        cert: Certification,
        *,
        deliberation_id: str,
        session: str,
        deliberated_on: str,
        lines: list[ResultLine],
    ) -> None:
        for line in lines:
            existing = self.result_in(session, line.bloc)
            if existing is not None:
                raise LineError(
                    "bloc",
                    f"un résultat est déjà enregistré pour {line.bloc} à la session {session} "
                    f"(délibération {existing.deliberation_id}) ; pour une erreur matérielle, "
                    "utilisez POST /v1/corrections",
                )
        results = {**self.results, **{line.result_id: line for line in lines}}
        validated, withdrawn = decisions.acquisitions_after(
            self.candidate_number, results, self.acquisitions
        )
        acquisitions = _apply_acquisitions(self.acquisitions, validated, withdrawn)
        award, award_withdrawn, outcome = decisions.award_after(
            cert,
            self.candidate_number,
            session,
            results,
            acquisitions,
            self.award,
            source_id=deliberation_id,
            on=deliberated_on,
            via="exam",
        )
        self._results_recorded(
            candidate_number=self.candidate_number,
            certification=self.certification,
            access_route=self.access_route,
            deliberation_id=deliberation_id,
            session=session,
            deliberated_on=deliberated_on,
            exam_center=self.exam_center,
            lines=[line.to_dict() for line in lines],
            validated=[a.to_dict() for a in validated],
            withdrawn=[a.to_dict() for a in withdrawn],
            award=award.to_dict() if award else None,
            award_withdrawn=award_withdrawn.to_dict() if award_withdrawn else None,
            outcome=outcome.to_dict(),
        )

    def record_vae_decision(
        self,
        cert: Certification,
        *,
        decision_id: str,
        decided_on: str,
        decision: str,
        blocs: list[str],
        jury: dict[str, Any],
    ) -> None:
        if self.access_route != "vae":
            raise RuleViolation(
                f"Le candidat {self.candidate_number} n'est pas inscrit par la voie de la VAE."
            )
        granted = {
            code: Acquisition(
                validation_id=ids.validation_id(self.candidate_number, code, decision_id),
                bloc=code,
                via="vae",
                grade=None,
                session=None,
                validated_on=decided_on,
                source_id=decision_id,
            )
            for code in blocs
        }
        validated, withdrawn = decisions.acquisitions_after(
            self.candidate_number, self.results, self.acquisitions, granted
        )
        acquisitions = _apply_acquisitions(self.acquisitions, validated, withdrawn)
        award, award_withdrawn, outcome = decisions.award_after(
            cert,
            self.candidate_number,
            decided_on[:7],
            self.results,
            acquisitions,
            self.award,
            source_id=decision_id,
            on=decided_on,
            via="vae",
        )
        self._vae_decision_recorded(
            candidate_number=self.candidate_number,
            certification=self.certification,
            access_route=self.access_route,
            decision_id=decision_id,
            decided_on=decided_on,
            decision=decision,
            blocs=blocs,
            jury=jury,
            exam_center=self.exam_center,
            validated=[a.to_dict() for a in validated],
            withdrawn=[a.to_dict() for a in withdrawn],
            award=award.to_dict() if award else None,
            award_withdrawn=award_withdrawn.to_dict() if award_withdrawn else None,
            outcome=outcome.to_dict(),
        )

    def correct_result(
        self,
        cert: Certification,
        *,
        correction_id: str,
        result_id: str,
        mark: Mark,
        reason: str,
        corrected_on: str,
    ) -> None:
        previous = self.results.get(result_id)
        if previous is None:
            raise ConflictingState(
                "Cette délibération ne contient pas de résultat pour ce candidat et ce bloc."
            )
        if previous.mark == mark:
            raise ConflictingState(
                f"La note enregistrée est déjà {mark.to_text()} : il n'y a rien à corriger."
            )
        corrected = ResultLine(
            result_id=previous.result_id,
            bloc=previous.bloc,
            session=previous.session,
            mark=mark,
            modality=previous.modality,
            deliberation_id=previous.deliberation_id,
            deliberated_on=previous.deliberated_on,
            justification=previous.justification,
        )
        results = {**self.results, result_id: corrected}
        validated, withdrawn = decisions.acquisitions_after(
            self.candidate_number, results, self.acquisitions
        )
        acquisitions = _apply_acquisitions(self.acquisitions, validated, withdrawn)
        award, award_withdrawn, outcome = decisions.award_after(
            cert,
            self.candidate_number,
            previous.session,
            results,
            acquisitions,
            self.award,
            source_id=correction_id,
            on=corrected_on,
            via="exam",
        )
        self._result_corrected(
            candidate_number=self.candidate_number,
            certification=self.certification,
            access_route=self.access_route,
            correction_id=correction_id,
            corrected_on=corrected_on,
            reason=reason,
            previous_mark=previous.mark.to_text(),
            line=corrected.to_dict(),
            exam_center=self.exam_center,
            validated=[a.to_dict() for a in validated],
            withdrawn=[a.to_dict() for a in withdrawn],
            award=award.to_dict() if award else None,
            award_withdrawn=award_withdrawn.to_dict() if award_withdrawn else None,
            outcome=outcome.to_dict(),
        )

    def add_cpf_details(self, details: dict[str, str]) -> None:
        self._cpf_details_added(**details)

    def record_cpf_outcome(
        self,
        *,
        id_technique: str,
        accepted: bool,
        message: str | None,
        flux_id: str | None,
        treatment_id: str | None,
        recorded_at: str,
    ) -> bool:
        """Record what the Caisse des Dépôts answered for one declared award; False (nothing
        recorded) when this very answer is already recorded: importing an acknowledgement
        twice changes nothing, while a later answer (a passage declared again) is recorded."""
        outcome: dict[str, object] = {
            "id_technique": id_technique,
            "accepted": accepted,
            "message": message,
            "flux_id": flux_id,
            "treatment_id": treatment_id,
        }
        known = getattr(self, "cpf_outcomes", [])
        if any({k: o.get(k) for k in outcome} == outcome for o in known):
            return False
        if len(known) >= CPF_OUTCOMES_MAX:
            raise RuleViolation(
                f"Trop de comptes rendus CPF pour le candidat {self.candidate_number}."
            )
        self._cpf_outcome_recorded(
            id_technique=id_technique,
            accepted=accepted,
            message=message,
            flux_id=flux_id,
            treatment_id=treatment_id,
            recorded_at=recorded_at,
        )
        return True

    # --- events (their bodies only apply what the command decided) -------------------------

    @event("CpfDetailsAdded")
    def _cpf_details_added(
        self,
        sex: str | None = None,
        birth_insee_code: str | None = None,
        birth_postal_code: str | None = None,
        birth_country_code: str | None = None,
    ) -> None:
        for name, value in (
            ("sex", sex),
            ("birth_insee_code", birth_insee_code),
            ("birth_postal_code", birth_postal_code),
            ("birth_country_code", birth_country_code),
        ):
            if value is not None:
                setattr(self, name, value)

    @event("CpfOutcomeRecorded")
    def _cpf_outcome_recorded(
        self,
        id_technique: str,
        accepted: bool,
        message: str | None,
        flux_id: str | None,
        treatment_id: str | None,
        recorded_at: str,
    ) -> None:
        # Candidates recorded before the CPF declaration have no list yet.
        self.cpf_outcomes = [
            *getattr(self, "cpf_outcomes", []),
            {
                "id_technique": id_technique,
                "accepted": accepted,
                "message": message,
                "flux_id": flux_id,
                "treatment_id": treatment_id,
                "recorded_at": recorded_at,
            },
        ]

    @event("ResultsRecorded")
    def _results_recorded(
        self,
        candidate_number: str,
        certification: str,
        access_route: str,
        deliberation_id: str,
        session: str,
        deliberated_on: str,
        exam_center: str,
        lines: list[dict[str, Any]],
        validated: list[dict[str, Any]],
        withdrawn: list[dict[str, Any]],
        award: dict[str, Any] | None,
        award_withdrawn: dict[str, Any] | None,
        outcome: dict[str, Any],
    ) -> None:
        for data in lines:
            line = ResultLine.from_dict(data)
            self.results[line.result_id] = line
        self._apply_changes(validated, withdrawn, award, award_withdrawn)

    @event("VaeDecisionRecorded")
    def _vae_decision_recorded(
        self,
        candidate_number: str,
        certification: str,
        access_route: str,
        decision_id: str,
        decided_on: str,
        decision: str,
        blocs: list[str],
        jury: dict[str, Any],
        exam_center: str,
        validated: list[dict[str, Any]],
        withdrawn: list[dict[str, Any]],
        award: dict[str, Any] | None,
        award_withdrawn: dict[str, Any] | None,
        outcome: dict[str, Any],
    ) -> None:
        self._apply_changes(validated, withdrawn, award, award_withdrawn)

    @event("ResultCorrected")
    def _result_corrected(
        self,
        candidate_number: str,
        certification: str,
        access_route: str,
        correction_id: str,
        corrected_on: str,
        reason: str,
        previous_mark: str,
        line: dict[str, Any],
        exam_center: str,
        validated: list[dict[str, Any]],
        withdrawn: list[dict[str, Any]],
        award: dict[str, Any] | None,
        award_withdrawn: dict[str, Any] | None,
        outcome: dict[str, Any],
    ) -> None:
        corrected = ResultLine.from_dict(line)
        self.results[corrected.result_id] = corrected
        self._apply_changes(validated, withdrawn, award, award_withdrawn)

    def _apply_changes(
        self,
        validated: list[dict[str, Any]],
        withdrawn: list[dict[str, Any]],
        award: dict[str, Any] | None,
        award_withdrawn: dict[str, Any] | None,
    ) -> None:
        self.acquisitions = _apply_acquisitions(
            self.acquisitions,
            [Acquisition.from_dict(a) for a in validated],
            [Acquisition.from_dict(a) for a in withdrawn],
        )
        if award_withdrawn is not None:
            self.award = None
        if award is not None:
            self.award = Award.from_dict(award)


def _apply_acquisitions(
    current: dict[str, Acquisition], validated: list[Acquisition], withdrawn: list[Acquisition]
) -> dict[str, Acquisition]:
    out = dict(current)
    for gone in withdrawn:
        if out.get(gone.bloc) == gone:
            del out[gone.bloc]
    for new in validated:
        out[new.bloc] = new
    return out
