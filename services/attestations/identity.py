"""Who the issuer is on the web: one signing identity per deployment (a did:web of this
service), under which each attestation names the certifier of ITS certification (name and
SIRET from that certification's referential); the status lists, shared by every
certification, name the service itself."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

from contracts.referential import Certification, load_certification
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


@dataclass(frozen=True)
class Issuers:
    """The service's identity (``did``, ``name``, ``url``) and, per certification, the issuer
    profile its attestations carry."""

    did: str
    name: str  # the service's own name (ATTESTATIONS_ISSUER_NAME): on the status lists
    url: str

    @classmethod
    def of_service(cls, base_url: str, name: str) -> Issuers:
        base = base_url.rstrip("/")
        return cls(did=did_web(base), name=name, url=base)

    def for_certification(self, code: str) -> vc.IssuerProfile:
        """The certifier of ``code`` (``KeyError`` when there is no such referential)."""
        return _profile(self, code)

    @property
    def service(self) -> vc.ServiceIssuer:
        return vc.ServiceIssuer(id=self.did, name=self.name)


@cache
def _profile(issuers: Issuers, code: str) -> vc.IssuerProfile:
    return issuer_profile(issuers.url, load_certification(code))


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
