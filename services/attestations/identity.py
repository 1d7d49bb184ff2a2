"""Who the issuer is on the web: the certifier's profile under a did:web of this service."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from contracts.referential import Certification
from services.attestations.domain import credential as vc


def did_web(base_url: str) -> str:
    """``http://127.0.0.1:8102`` -> ``did:web:127.0.0.1%3A8102`` (path segments become ``:``)."""
    parts = urlsplit(base_url)
    did = "did:web:" + quote(parts.netloc, safe="")
    path = parts.path.strip("/")
    if path:
        did += ":" + ":".join(quote(p, safe="") for p in path.split("/"))
    return did


def issuer_profile(base_url: str, cert: Certification) -> vc.IssuerProfile:
    return vc.IssuerProfile(
        id=did_web(base_url),
        name=cert.certifier.name,
        siret=cert.certifier.siret,
        url=base_url,
    )


def did_document(did: str, jwks: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """Every key, active and retired, as a JsonWebKey verification method."""
    methods = [
        {
            "id": f"{did}#{key['kid']}",
            "type": "JsonWebKey",
            "controller": did,
            "publicKeyJwk": {k: v for k, v in key.items() if k in ("kty", "crv", "x", "kid")},
        }
        for key in jwks["keys"]
    ]
    refs = [m["id"] for m in methods]
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/jwk/v1"],
        "id": did,
        "verificationMethod": methods,
        "assertionMethod": refs,
        "authentication": refs,
    }
