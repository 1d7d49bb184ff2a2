"""Checking an SD-JWT VC (``application/dc+sd-jwt``) sent to ``POST /v1/verify``: as issued
(every Disclosure) or as a holder presents it (some Disclosures, a KB-JWT perhaps).

Checks, in order: format (``<JWT>~<D>~…~[KB-JWT]``, at most ``MAX_DISCLOSURES``), issuer-key,
signature (``typ dc+sd-jwt``, a key of the issuer, active or retired), claims (``iss`` the DID
the kid names, ``vct`` one of this service's types, ``status.status_list``), disclosures (each
one's digest in the signed JWT once, nothing given twice, no clash with a plain claim: RFC 9901
7.1), key-binding (when a KB-JWT is sent: signed by the ``cnf.jwk`` key over this presentation;
``aud`` and ``nonce`` are reported, for whoever asked for them to compare), status (the Token
Status List bit). The report names what was disclosed, and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from services.attestations.domain import sd_jwt
from services.attestations.domain.jose import VerificationError, unverified_header
from services.attestations.sd_jwt_vc import TYP
from services.attestations.verification import MAX_HEADER_CHARS, Check

#: (status, detail) of ``status.status_list`` {uri, idx}: "valid", "revoked" or "unknown".
TokenStatusLookup = Callable[[str, int], tuple[str, str]]

_VCT = re.compile(r"/vct/(RNCP\d{1,8})/(bloc|certification)")


def check_sd_jwt_vc(
    token: str,
    jwks: Mapping[str, Any],
    status_lookup: TokenStatusLookup | None,
    *,
    base_url: str,
    now: int,
) -> dict[str, Any]:
    checks: list[Check] = []
    report: dict[str, Any] = {"valid": False, "status": "unknown", "format": TYP}

    def done() -> dict[str, Any]:
        report["checks"] = [asdict(c) for c in checks]
        report["valid"] = bool(checks) and all(c.ok for c in checks)
        return report

    try:
        parts = sd_jwt.split(token)
        if len(parts.jwt.split(".", 1)[0]) > MAX_HEADER_CHARS:
            raise sd_jwt.SdJwtError("format", f"en-tête JWS de plus de {MAX_HEADER_CHARS} octets")
        header = unverified_header(parts.jwt)
    except sd_jwt.SdJwtError as error:
        checks.append(Check("format", False, error.detail))
        return done()
    except VerificationError as error:
        checks.append(Check("format", False, f"pas un SD-JWT : {error.detail}"))
        return done()
    kb = " et un KB-JWT" if parts.kb_jwt else ""
    count = len(parts.disclosures)
    checks.append(
        Check("format", True, f"SD-JWT, typ {header.get('typ')}, {count} divulgation(s){kb}")
    )
    kid = str(header.get("kid", ""))
    try:
        _, payload = sd_jwt.verify_issuer_jwt(parts.jwt, jwks, TYP)
    except sd_jwt.SdJwtError as error:
        if error.check == "format":
            checks[-1] = Check("format", False, error.detail)
        elif error.check == "issuer-key":
            checks.append(Check("issuer-key", False, f"clé « {kid} » inconnue de l'émetteur"))
        else:
            checks.append(Check("issuer-key", True, f"clé « {kid} » publiée"))
            if error.check == "signature":
                checks.append(Check("signature", False, "la signature ne correspond pas"))
            else:
                checks.append(Check("signature", True, f"signature {header.get('alg')} valide"))
                checks.append(Check("claims", False, error.detail))
        return done()
    checks.append(Check("issuer-key", True, f"clé « {kid} » publiée par l'émetteur"))
    checks.append(Check("signature", True, f"signature {header.get('alg')} valide"))

    problem = _claims_problem(payload, base_url)
    checks.append(Check("claims", problem is None, problem or "iss, vct, iat et status conformes"))
    if problem is not None:
        return done()
    report["vct"] = payload["vct"]
    report["issuer"] = payload["iss"]
    try:
        processed = sd_jwt.process(payload, parts.disclosures)
    except sd_jwt.SdJwtError as error:
        checks.append(Check("disclosures", False, error.detail))
        return done()
    names = [".".join(str(p) for p in path) for path in processed.disclosed]
    checks.append(
        Check(
            "disclosures",
            True,
            f"{len(names)} revendication(s) divulguée(s) : {', '.join(names)}"
            if names
            else "aucune revendication divulguée",
        )
    )
    report["disclosed"] = names
    report["claims"] = processed.claims

    cnf = payload.get("cnf")
    if parts.kb_jwt is not None:
        try:
            kb_payload = sd_jwt.verify_key_binding(parts, cnf, now=now)
        except sd_jwt.SdJwtError as error:
            checks.append(Check("key-binding", False, error.detail))
            return done()
        report["key_binding"] = {k: kb_payload[k] for k in ("aud", "nonce", "iat")}
        checks.append(
            Check(
                "key-binding",
                True,
                f"KB-JWT signé par la clé cnf.jwk pour « {kb_payload['aud']} » "
                f"(nonce « {kb_payload['nonce']} »)",
            )
        )
    elif cnf is not None:
        checks.append(
            Check(
                "key-binding",
                True,
                "lié à une clé du porteur (cnf) ; présenté sans KB-JWT : la possession de la "
                "clé n'est pas prouvée",
            )
        )

    status_list = payload["status"]["status_list"]
    if status_lookup is None:
        report["status"] = "unchecked"
    else:
        status, detail = status_lookup(status_list["uri"], status_list["idx"])
        report["status"] = status
        checks.append(Check("status", status == "valid", detail))
    return done()


def _claims_problem(payload: Mapping[str, Any], base_url: str) -> str | None:
    vct = payload.get("vct")
    prefix = base_url.rstrip("/")
    if (
        not isinstance(vct, str)
        or not vct.startswith(prefix)
        or not _VCT.fullmatch(vct[len(prefix) :])
    ):
        return f"vct {vct!r} n'est pas un type de cet émetteur"
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        return "iat absent ou pas un entier"
    status = payload.get("status")
    entry = status.get("status_list") if isinstance(status, Mapping) else None
    if (
        not isinstance(entry, Mapping)
        or not isinstance(entry.get("uri"), str)
        or not isinstance(entry.get("idx"), int)
        or isinstance(entry.get("idx"), bool)
        or entry["idx"] < 0
    ):
        return "status.status_list {idx, uri} absent ou mal formé"
    return None
