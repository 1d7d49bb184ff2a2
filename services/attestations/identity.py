"""Who the issuer is on the web: one signing identity per deployment (a did:web of this
service), under which each attestation names the certifier of ITS certification (name and
SIRET from that certification's referential); the status lists, shared by every
certification, name the service itself."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

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


def did_web_document_url(did: str) -> str:
    """Where a did:web resolver fetches the DID document (did:web method, "Read"):
    ``did:web:example.org%3A8443`` -> ``https://example.org:8443/.well-known/did.json``;
    ``did:web:example.org:a:b`` -> ``https://example.org/a/b/did.json``. Always https."""
    if not did.startswith("did:web:"):
        raise ValueError(f"not a did:web: {did!r}")
    host, *path = did[len("did:web:") :].split(":")
    if not host:
        raise ValueError(f"a did:web names a host: {did!r}")
    where = "/".join(unquote(p) for p in path) if path else ".well-known"
    return f"https://{unquote(host)}/{where}/did.json"


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
    """Every key, active and retired, as a JsonWebKey verification method whose id is the kid
    its tokens carry (``<did>#<thumbprint>``; a bare kid of the JWK Set is put under ``did``,
    once per method)."""
    methods: dict[str, dict[str, Any]] = {}
    for key in jwks["keys"]:
        kid = key["kid"]
        method_id = kid if kid.startswith(f"{did}#") else f"{did}#{kid}"
        jwk = {k: v for k, v in key.items() if k in ("kty", "crv", "x", "y")}
        methods.setdefault(
            method_id,
            {
                "id": method_id,
                "type": "JsonWebKey",
                "controller": did,
                "publicKeyJwk": {**jwk, "kid": method_id},
            },
        )
    refs = list(methods)
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/jwk/v1"],
        "id": did,
        "verificationMethod": list(methods.values()),
        "assertionMethod": refs,
        "authentication": refs,
    }
