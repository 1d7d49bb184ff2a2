"""What a verification shows: one view model for the HTML page and the JSON answer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from contracts.referential import load_certification
from services.attestations.domain.aggregates import Attestation

MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


def french_date(day: date) -> str:
    return f"{day.day}{'er' if day.day == 1 else ''} {MONTHS[day.month - 1]} {day.year}"


def competences_of(attestation: Attestation) -> list[str]:
    cert = load_certification(attestation.certification)
    if attestation.kind == "bloc":
        bloc = cert.bloc(attestation.code)
        return list(bloc.competences) if bloc else []
    return [c for b in cert.mandatory_blocs for c in b.competences]


def as_json(attestation: Attestation, issuer: dict[str, str], verify_url: str) -> dict[str, Any]:
    """The public answer: names, what is certified, by whom, when; never birth date or grades."""
    cert = load_certification(attestation.certification)
    body: dict[str, Any] = {
        "id": attestation.public_id,
        "status": attestation.status,
        "holder": {
            "given_names": attestation.holder["given_names"],
            "family_name": attestation.holder["family_name"],
        },
        "achievement": {
            "kind": attestation.kind,
            "code": attestation.code,
            "title": attestation.title,
            "competences": competences_of(attestation),
            "certification": {"code": cert.code, "title": cert.title, "level": cert.level},
        },
        "issuer": issuer,
        "issued_at": attestation.issued_at,
        "verify_url": verify_url,
    }
    if attestation.revoked_at:
        body["revoked_at"] = attestation.revoked_at
        body["revocation_reason"] = attestation.revocation_reason
    if attestation.superseded_by:
        body["superseded_by"] = attestation.superseded_by
    return body


def for_page(attestation: Attestation, issuer: dict[str, str]) -> dict[str, Any]:
    cert = load_certification(attestation.certification)
    issued = datetime.fromisoformat(attestation.issued_at)
    revoked = datetime.fromisoformat(attestation.revoked_at) if attestation.revoked_at else None
    holder = attestation.holder
    return {
        "status": attestation.status,
        "kind": attestation.kind,
        "code": attestation.code,
        "title": attestation.title,
        "holder_name": " ".join([*holder["given_names"], holder["family_name"]]),
        "certification_code": cert.code,
        "certification_title": cert.title,
        "level": cert.level,
        "issuer_name": issuer["name"],
        "issuer_id": issuer["id"],
        "issued_on": french_date(issued.date()),
        "issued_at_iso": issued.date().isoformat(),
        "revoked_on": french_date(revoked.date()) if revoked else None,
        "revocation_reason": attestation.revocation_reason,
        "competences": competences_of(attestation),
    }
