"""Checking a credential: the same checks for the verify API, the page and the offline CLI.

Checks, in order: format (a compact JWS), pades (for a PDF: signed by the service, intact,
covering the whole file), issuer-key (its kid is one of the issuer's keys, active or retired:
the DID URL ``<did>#<thumbprint>``, or the bare thumbprint of a token signed before), signature,
claims (``iss`` is the issuer's id, ``jti`` the credential's, the kid's DID the issuer's),
schema (W3C VC 2.0 and Open Badges 3.0 JSON Schemas, vendored from the specifications), status
(not revoked; skipped offline). Once the signature verifies, the report names the holder and the
achievement, so whoever holds the paper can compare.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from contracts.referential import load_certification
from services.attestations.domain.credential import (
    FAMILY_NAME_IDENTITY_TYPE,
    GIVEN_NAMES_IDENTITY_TYPE,
    GIVEN_NAMES_SEPARATOR,
)
from services.attestations.domain.jose import VerificationError, unverified_header, verify
from services.attestations.pdf_inspection import PdfInspection

SCHEMAS = ("vc2_verifiable-credential-schema.json", "ob_v3p0_achievementcredential_schema.json")

#: A protected header is a few hundred bytes; a longer one is refused before it is decoded.
MAX_HEADER_CHARS = 4096

# (status, detail) for a credential payload: "valid", "revoked" or "unknown".
StatusLookup = Callable[[Mapping[str, Any]], tuple[str, str]]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    valid: bool = False
    status: str = "unknown"
    checks: list[Check] = field(default_factory=list)
    credential: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "status": self.status,
            "checks": [asdict(c) for c in self.checks],
            "credential_id": (self.credential or {}).get("id"),
            "holder": holder_of(self.credential),
            "achievement": achievement_of(self.credential),
        }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def holder_of(credential: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Whose attestation it is, from a verified credential's OB 3.0 identity entries."""
    if credential is None:
        return None
    entries = _dict(credential.get("credentialSubject")).get("identifier")
    found: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        entry = _dict(entry)
        kind, value = entry.get("identityType"), entry.get("identityHash")
        if isinstance(kind, str) and isinstance(value, str) and not entry.get("hashed"):
            found.setdefault(kind, value)
    given = found.get(GIVEN_NAMES_IDENTITY_TYPE)
    return {
        "name": found.get("name"),
        "given_names": given.split(GIVEN_NAMES_SEPARATOR) if given else None,
        "family_name": found.get(FAMILY_NAME_IDENTITY_TYPE),
    }


def achievement_of(credential: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What it attests (bloc or certification, code, title, certification) and since when."""
    if credential is None:
        return None
    achievement = _dict(_dict(credential.get("credentialSubject")).get("achievement"))
    code = achievement.get("humanCode")
    body: dict[str, Any] = {
        "kind": {"Competency": "bloc", "Diploma": "certification"}.get(
            str(achievement.get("achievementType")), "autre"
        ),
        "code": code,
        "title": achievement.get("name"),
        "certification": None,
        "issued_at": credential.get("validFrom"),
    }
    match = re.match(r"RNCP\d+", code) if isinstance(code, str) else None
    if match:
        try:
            cert = load_certification(match.group(0))
        except KeyError:
            body["certification"] = {"code": match.group(0), "title": None}
        else:
            body["certification"] = {"code": cert.code, "title": cert.title}
    return body


@cache
def _validators() -> tuple[Validator, ...]:
    out = []
    for name in SCHEMAS:
        text = (resources.files("services.attestations") / "schemas" / name).read_text("utf-8")
        schema = json.loads(text)
        out.append(validator_for(schema)(schema))
    return tuple(out)


def schema_problems(credential: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, validator in zip(SCHEMAS, _validators(), strict=True):
        for error in validator.iter_errors(credential):
            where = "/".join(str(p) for p in error.absolute_path) or "(racine)"
            problems.append(f"{name.split('_')[0]}: {where}: {error.message}")
    return problems


def check_credential(
    token: str | bytes, jwks: Mapping[str, Any], status_lookup: StatusLookup | None
) -> Report:
    report = Report()
    head = token.split(b".", 1)[0] if isinstance(token, bytes) else token.split(".", 1)[0]
    if len(head) > MAX_HEADER_CHARS:
        report.checks.append(
            Check("format", False, f"en-tête JWS trop long (plus de {MAX_HEADER_CHARS} octets)")
        )
        return report
    try:
        header = unverified_header(token)
    except VerificationError as error:
        report.checks.append(Check("format", False, f"pas un JWS compact : {error.detail}"))
        return report
    report.checks.append(Check("format", True, f"JWS compact, typ {header.get('typ')}"))
    kid = str(header.get("kid", ""))
    try:
        payload = verify(token, jwks)
    except VerificationError as error:
        if error.check == "issuer-key":
            report.checks.append(
                Check("issuer-key", False, f"clé « {kid} » inconnue de l'émetteur")
            )
        elif error.check == "signature":
            report.checks.append(Check("issuer-key", True, f"clé « {kid} » publiée"))
            report.checks.append(Check("signature", False, "la signature ne correspond pas"))
        elif error.check == "claims":
            # Signed by the issuer's key, but what the JWT says contradicts the credential.
            report.checks.append(Check("issuer-key", True, f"clé « {kid} » publiée"))
            report.checks.append(Check("signature", True, f"signature {header.get('alg')} valide"))
            report.checks.append(
                Check("claims", False, f"JWT incohérent avec le justificatif : {error.detail}")
            )
        else:
            report.checks.append(Check("signature", False, error.detail))
        return report
    report.credential = payload
    report.checks.append(Check("issuer-key", True, f"clé « {kid} » publiée par l'émetteur"))
    report.checks.append(Check("signature", True, f"signature {header.get('alg')} valide"))
    report.checks.append(Check("claims", True, _claims_detail(payload)))
    problems = schema_problems(payload)
    report.checks.append(
        Check(
            "schema", not problems, "; ".join(problems[:5]) or "conforme VC 2.0 et Open Badges 3.0"
        )
    )
    return conclude(report, payload, status_lookup)


def conclude(
    report: Report, credential: Mapping[str, Any], status_lookup: StatusLookup | None
) -> Report:
    """The status check (when a lookup is given) and the verdict: valid if every check is."""
    if status_lookup is not None:
        status, detail = status_lookup(credential)
        report.status = status
        report.checks.append(Check("status", status == "valid", detail))
    else:
        report.status = "unchecked"
    report.valid = all(c.ok for c in report.checks)
    return report


def _claims_detail(payload: Mapping[str, Any]) -> str:
    present = [name for name in ("iss", "jti") if name in payload]
    if not present:
        return "ni « iss » ni « jti » (justificatif émis avant leur ajout)"
    return " et ".join(f"« {name} »" for name in present) + " conformes au justificatif"


def check_pdf(
    inspection: PdfInspection, jwks: Mapping[str, Any], status_lookup: StatusLookup | None
) -> Report:
    """A PDF's report: its attached credential's checks, with the PAdES verdict second."""
    if inspection.credential is None:
        report = Report()
        report.checks.append(Check("format", False, inspection.format_detail))
        if inspection.pades_ok is not None:
            report.checks.append(Check("pades", inspection.pades_ok, inspection.pades_detail))
        return report
    report = check_credential(inspection.credential, jwks, status_lookup)
    report.checks.insert(1, Check("pades", bool(inspection.pades_ok), inspection.pades_detail))
    report.valid = report.valid and bool(inspection.pades_ok)
    return report
