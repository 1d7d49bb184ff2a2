"""What a change to a candidate's record decides: blocs acquired or withdrawn, diploma awarded
or withdrawn. Pure functions of the record before and after the change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from contracts.referential import Certification
from services.registry.domain import diploma, ids
from services.registry.domain.records import Acquisition, Award, ResultLine


@dataclass(frozen=True)
class Changes:
    validated: list[Acquisition] = field(default_factory=list)
    withdrawn: list[Acquisition] = field(default_factory=list)
    award: Award | None = None
    award_withdrawn: Award | None = None
    outcome: diploma.Outcome | None = None


def acquisitions_after(
    candidate_number: str,
    results: Mapping[str, ResultLine],
    current: Mapping[str, Acquisition],
    vae_blocs: Mapping[str, Acquisition] | None = None,
) -> tuple[list[Acquisition], list[Acquisition]]:
    """Blocs newly acquired and acquisitions withdrawn, given the (corrected) results.

    A bloc acquired by VAE is definitive. A bloc acquired by a grade stays attached to the
    result that first validated it while that result still validates; a correction that takes
    it away falls back to another validating result if there is one (a new acquisition).
    """
    vae_blocs = vae_blocs or {}
    validating: dict[str, ResultLine] = {}
    for line in sorted(results.values(), key=lambda r: (r.session, r.deliberated_on, r.result_id)):
        if line.mark.validates and line.bloc not in validating:
            validating[line.bloc] = line
    validated: list[Acquisition] = []
    withdrawn: list[Acquisition] = []
    for bloc in sorted(set(current) | set(validating) | set(vae_blocs)):
        held = current.get(bloc)
        if held is not None and held.via == "vae":
            continue
        if held is not None and held.result_id is not None:
            still = results.get(held.result_id)
            if still is not None and still.mark.validates:
                continue
            withdrawn.append(held)
            held = None
        if bloc in vae_blocs:
            validated.append(vae_blocs[bloc])
            continue
        first = validating.get(bloc)
        if first is not None:
            validated.append(
                Acquisition(
                    validation_id=ids.validation_id(candidate_number, bloc, first.result_id),
                    bloc=bloc,
                    via="grade",
                    grade=first.mark.to_text(),
                    session=first.session,
                    validated_on=first.deliberated_on,
                    source_id=first.deliberation_id,
                    result_id=first.result_id,
                )
            )
    return validated, withdrawn


def award_after(
    cert: Certification,
    candidate_number: str,
    session: str,
    results: Mapping[str, ResultLine],
    acquisitions: Mapping[str, Acquisition],
    current: Award | None,
    *,
    source_id: str,
    on: str,
    via: Literal["exam", "vae"],
) -> tuple[Award | None, Award | None, diploma.Outcome]:
    """(award granted, award withdrawn, outcome) for the diploma decision of ``session``."""
    units = diploma.standings(cert, session, results.values(), acquisitions)
    outcome = diploma.evaluate(cert, units)
    if outcome.decision == "awarded":
        average = None if outcome.average is None else format(outcome.average, "f")
        if current is not None and (
            current.session != session
            or (current.average == average and current.mention == outcome.mention)
        ):
            return None, None, outcome
        granted = Award(
            award_id=ids.award_id(candidate_number, source_id),
            via=via,
            session=session,
            average=average,
            mention=outcome.mention,
            awarded_on=on,
            source_id=source_id,
        )
        return granted, current, outcome
    if current is not None and current.session == session and current.via == "exam":
        return None, current, outcome
    return None, None, outcome
