"""Choosing a credential's form on the routes that serve one: the JWS by default,
the Data Integrity form with ``?format=ldp_vc`` or content negotiation (``Accept:
application/vc+ld+json`` or ``application/ld+json``), an SD-JWT VC with ``?format=dc+sd-jwt``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Request

from services.attestations.data_integrity_forms import DataIntegrityForms
from services.attestations.domain.data_integrity import MEDIA_TYPE as LD_MEDIA_TYPE
from services.attestations.domain.jose import MEDIA_TYPE
from services.attestations.sd_jwt_vc import MEDIA_TYPE as SD_JWT_MEDIA_TYPE

Format = Annotated[
    # "dc sd-jwt": what "?format=dc+sd-jwt" becomes once a query string is decoded ("+" is a
    # space there); both are taken, so the URL works as written as well as encoded (%2B).
    Literal["jwt", "ldp_vc", "dc+sd-jwt", "dc sd-jwt"] | None,
    Query(
        alias="format",
        description="jwt : application/vc+jwt (par défaut), le justificatif signé à "
        "l'émission ; ldp_vc : application/vc+ld+json, preuve Data Integrity eddsa-rdfc-2022 "
        "(aussi avec Accept: application/vc+ld+json ou application/ld+json) ; dc+sd-jwt : "
        "application/dc+sd-jwt, un SD-JWT VC neuf avec toutes ses divulgations, sans liaison "
        "à une clé du porteur (cnf : par OpenID4VCI).",
    ),
]
#: Both forms of a credential, as the routes that serve one document them.
SECURED_FORMS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            MEDIA_TYPE: {"schema": {"type": "string"}},
            LD_MEDIA_TYPE: {"schema": {"type": "object"}},
            SD_JWT_MEDIA_TYPE: {"schema": {"type": "string"}},
        }
    }
}


def wants_data_integrity(request: Request, chosen: str | None) -> bool:
    """``?format=`` when given, else content negotiation: a JSON-LD type named in Accept with
    a quality at least that of ``application/vc+jwt`` (the default otherwise)."""
    if chosen is not None:
        return chosen == "ldp_vc"
    best: dict[str, float] = {"ld": 0.0, "jwt": 0.0}
    for part in request.headers.get("accept", "").split(",")[:32]:
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = {LD_MEDIA_TYPE: "ld", "application/ld+json": "ld", MEDIA_TYPE: "jwt"}.get(
            media.lower()
        )
        if kind is not None:
            best[kind] = max(best[kind], quality)
    return best["ld"] > 0 and best["ld"] >= best["jwt"]


def data_integrity_forms(request: Request) -> DataIntegrityForms:
    forms: DataIntegrityForms = request.app.state.data_integrity
    return forms
