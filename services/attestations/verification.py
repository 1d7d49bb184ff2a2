"""Checking a credential: the same checks for the verify API, the page and the offline CLI.

Checks, in order: format (a compact JWS), issuer-key (its kid is one of the issuer's keys,
active or retired), signature, schema (W3C VC 2.0 and Open Badges 3.0 JSON Schemas, vendored
from the specifications), status (not revoked; skipped offline).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from services.attestations.domain.jose import VerificationError, unverified_header, verify

SCHEMAS = ("vc2_verifiable-credential-schema.json", "ob_v3p0_achievementcredential_schema.json")

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
        }


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
        else:
            report.checks.append(Check("signature", False, error.detail))
        return report
    report.credential = payload
    report.checks.append(Check("issuer-key", True, f"clé « {kid} » publiée par l'émetteur"))
    report.checks.append(Check("signature", True, f"signature {header.get('alg')} valide"))
    problems = schema_problems(payload)
    report.checks.append(
        Check(
            "schema", not problems, "; ".join(problems[:5]) or "conforme VC 2.0 et Open Badges 3.0"
        )
    )
    if status_lookup is not None:
        status, detail = status_lookup(payload)
        report.status = status
        report.checks.append(Check("status", status == "valid", detail))
    else:
        report.status = "unchecked"
    report.valid = all(c.ok for c in report.checks)
    return report
