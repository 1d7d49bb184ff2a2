"""Checking a credential secured with an embedded Data Integrity proof (eddsa-rdfc-2022): the
JSON counterpart of ``verification.check_credential`` for the verify API.

Checks, in order: format (a JSON object, within bounds, with one ``DataIntegrityProof`` of
cryptosuite eddsa-rdfc-2022), context (only the vendored JSON-LD contexts, every property
defined by them), issuer-key (its ``verificationMethod`` is an ``assertionMethod`` of the
issuer's DID document), signature, claims (that method is the credential issuer's), schema (the
same JSON Schemas as the JOSE form), dates (``validFrom`` passed, ``validUntil`` not, the proof
not created in the future), status (not revoked).

What is sent is hostile until proven otherwise: its size is capped before (the route), its JSON
is parsed with bounded nesting, no NaN or infinity and no giant numbers; only a list of context
URLs is accepted at the top (no inline or nested context, no blank node identifier: the
canonicalization's cost stays linear in the size of a tree), so a malformed document is a
failed check, never an error of the service.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.attestations.domain import data_integrity as di
from services.attestations.domain.jose import did_of, issuer_id
from services.attestations.verification import (
    Check,
    Report,
    StatusLookup,
    conclude,
    schema_problems,
)

#: Content types POST /v1/verify reads as a JSON(-LD) credential.
JSON_TYPES = (di.MEDIA_TYPE, "application/ld+json", "application/json")
#: An Open Badges credential nests about 8 levels; a document nesting deeper is refused.
MAX_DEPTH = 32
#: JSON objects and arrays in one document (ours have about 60).
MAX_NODES = 5_000
#: Objects without an "id" (anonymous nodes); ours have 11 at most (10 and the proof).
MAX_BLANK_NODES = 13
#: Digits of an integer (Python refuses more than 4,300 itself, slowly).
MAX_INT_DIGITS = 30
#: How far ahead of the verifier's clock a proof or validFrom may be (clock skew).
CLOCK_SKEW = timedelta(minutes=5)


_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class Hostile(ValueError):
    pass


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Hostile(f"nombre entier de plus de {MAX_INT_DIGITS} chiffres")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or len(text) > 64:
        raise Hostile("nombre hors limites")
    return value


def _constant(name: str) -> Any:
    raise Hostile(f"{name} n'est pas du JSON")


def parse(body: bytes) -> dict[str, Any]:
    """The JSON object of ``body``, within bounds; Hostile (a ValueError) otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Hostile("le document n'est pas de l'UTF-8") from None
    try:
        document = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise Hostile("imbrication trop profonde") from None
    except Hostile:
        raise
    except ValueError as error:
        raise Hostile(f"pas du JSON : {error}") from None
    if not isinstance(document, dict):
        raise Hostile("le document n'est pas un objet JSON")
    _bounded(document)
    return document


def _bounded(document: dict[str, Any]) -> None:
    """Nesting, size and the JSON-LD features refused (see the module's docstring)."""
    context = document.get("@context")
    if not isinstance(context, list) or not all(isinstance(c, str) for c in context):
        raise Hostile("« @context » doit être une liste d'URL")
    stack: list[tuple[Any, int, bool]] = [(document, 1, True)]
    nodes = blanks = 0
    while stack:
        value, depth, top = stack.pop()
        if not isinstance(value, dict | list):
            continue
        nodes += 1
        if depth > MAX_DEPTH:
            raise Hostile(f"imbrication de plus de {MAX_DEPTH} niveaux")
        if nodes > MAX_NODES:
            raise Hostile(f"plus de {MAX_NODES} objets et listes")
        if isinstance(value, list):
            stack.extend((item, depth + 1, False) for item in value)
            continue
        if "@context" in value and not top:
            raise Hostile("contexte JSON-LD imbriqué refusé")
        # Keywords (@nest, @graph, @reverse…) reshape the RDF without changing what is
        # signed, so the JSON read for the report could differ from it: ours use none.
        keyword = next((k for k in value if k.startswith("@") and k != "@context"), None)
        if keyword is not None:
            raise Hostile(f"mot-clé JSON-LD « {keyword} » refusé")
        if "id" not in value and not top:
            blanks += 1
            if blanks > MAX_BLANK_NODES:
                # Many look-alike anonymous nodes make RDFC-1.0 try every permutation of them
                # (a 300-byte document held the CPU for 14 s): ours have at most 10.
                raise Hostile(f"plus de {MAX_BLANK_NODES} nœuds anonymes")
        for key in ("id",):
            ident = value.get(key)
            if isinstance(ident, str) and ident.startswith("_:"):
                raise Hostile("identifiant de nœud anonyme (« _: ») refusé")
            if ident is not None and (not isinstance(ident, str) or not _ABSOLUTE.match(ident)):
                # A relative IRI: JSON-LD leaves its node out of the RDF, so out of the proof.
                raise Hostile(f"« {key} » n'est pas une IRI absolue")
        stack.extend((item, depth + 1, False) for k, item in value.items() if k != "@context")


def did_key_resolver(did_document: Mapping[str, Any]) -> di.KeyResolver:
    """The Ed25519 key of each ``assertionMethod`` of a DID document (JsonWebKey or Multikey)."""
    assertion = {
        m if isinstance(m, str) else m.get("id") for m in did_document.get("assertionMethod", [])
    }
    methods = {
        m["id"]: m
        for m in did_document.get("verificationMethod", [])
        if isinstance(m, dict) and m.get("id") in assertion
    }

    def resolve(method_id: str) -> Ed25519PublicKey | None:
        method = methods.get(method_id)
        if method is None:
            return None
        try:
            jwk = method.get("publicKeyJwk")
            if isinstance(jwk, dict) and (jwk.get("kty"), jwk.get("crv")) == ("OKP", "Ed25519"):
                x = str(jwk["x"])
                raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            elif isinstance(method.get("publicKeyMultibase"), str):
                raw = di.public_key_from_multibase(method["publicKeyMultibase"])
            else:
                return None
            return Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, KeyError, binascii.Error):
            return None

    return resolve


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _dates(credential: Mapping[str, Any], proof: Mapping[str, Any], now: datetime) -> Check:
    valid_from = _moment(credential.get("validFrom"))
    valid_until = _moment(credential.get("validUntil"))
    created = _moment(proof.get("created"))
    if "validFrom" in credential and valid_from is None:
        return Check("dates", False, "« validFrom » n'est pas une date")
    if valid_from is not None and valid_from > now + CLOCK_SKEW:
        return Check("dates", False, f"valable à partir du {credential['validFrom']} seulement")
    if "validUntil" in credential and (valid_until is None or valid_until < now):
        return Check("dates", False, f"expiré (« validUntil » {credential.get('validUntil')})")
    if created is not None and created > now + CLOCK_SKEW:
        return Check("dates", False, f"preuve datée du futur ({proof['created']})")
    expires = _moment(proof.get("expires"))
    if expires is not None and expires < now:
        return Check("dates", False, f"preuve expirée ({proof['expires']})")
    return Check("dates", True, "en cours de validité")


def check_data_integrity(
    body: bytes,
    did_document: Mapping[str, Any],
    status_lookup: StatusLookup | None,
    now: datetime | None = None,
) -> Report:
    """The report on a credential secured with a Data Integrity proof, sent as JSON."""
    report = Report()
    try:
        document = parse(body)
        proof = di.the_proof(document)
    except Hostile as error:
        report.checks.append(Check("format", False, f"pas un justificatif JSON-LD : {error}"))
        return report
    except di.ProofError as error:
        report.checks.append(Check("format", False, f"pas de preuve eddsa-rdfc-2022 : {error}"))
        return report
    report.checks.append(Check("format", True, f"JSON-LD, {di.PROOF_TYPE} {di.CRYPTOSUITE}"))
    method = proof["verificationMethod"]
    try:
        verified = di.verify(document, did_key_resolver(did_document))
    except di.ProofError as error:
        if error.check == "issuer-key":
            report.checks.append(
                Check("issuer-key", False, f"méthode « {method} » inconnue de l'émetteur")
            )
        elif error.check in ("context", "format"):
            report.checks.append(Check("issuer-key", True, f"méthode « {method} » publiée"))
            report.checks.append(Check("context", False, error.detail))
        elif error.check == "signature":
            report.checks.append(Check("issuer-key", True, f"méthode « {method} » publiée"))
            report.checks.append(Check("context", True, "contextes connus, termes définis"))
            report.checks.append(Check("signature", False, "la signature ne correspond pas"))
        else:
            report.checks.append(Check("format", False, error.detail))
        return report
    credential = verified.credential
    report.credential = credential
    report.checks.append(Check("issuer-key", True, f"méthode « {method} » publiée par l'émetteur"))
    report.checks.append(Check("context", True, "contextes connus, termes définis"))
    report.checks.append(Check("signature", True, f"preuve {di.CRYPTOSUITE} valide"))
    issuer = issuer_id(credential)
    if did_of(method) != issuer:
        report.checks.append(
            Check("claims", False, f"la méthode « {method} » n'est pas de l'émetteur {issuer!r}")
        )
    else:
        report.checks.append(Check("claims", True, "méthode de vérification de l'émetteur"))
    problems = schema_problems(document)
    report.checks.append(
        Check(
            "schema", not problems, "; ".join(problems[:5]) or "conforme VC 2.0 et Open Badges 3.0"
        )
    )
    report.checks.append(_dates(credential, proof, now or datetime.now(UTC)))
    return conclude(report, credential, status_lookup)
