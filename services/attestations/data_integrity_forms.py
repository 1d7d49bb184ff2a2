"""The Data Integrity form of what the service signs, made when first asked for.

Each attestation's credential, and each status list, is signed as ``vc+jwt`` when issued (the
hot path: the JWS costs 0.06 ms, the whole issuance ~0.4 ms an attestation). Its Data Integrity
form (``domain/data_integrity.py``, eddsa-rdfc-2022) costs ~5 ms — RDFC-1.0 canonicalization in
Python, twice (``python -m bench.data_integrity``) —, so it is derived on request from the token
the service signed and stored, and kept in memory:

- the same credential: the token's payload less the JWT claims ``iss`` and ``jti`` (same id,
  issuer, validFrom, credentialStatus…);
- the same key: the verification method is the token's kid (its DID URL), so both forms name
  one verification method of the DID document;
- ``created`` is the credential's ``validFrom``, the instant that key signed it.

Ed25519 being deterministic, the document is a function of the token alone: two requests, two
replicas or a restart give the same bytes, so nothing needs to be stored.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import orjson
from cachetools import LRUCache

from services.attestations.domain import data_integrity as di
from services.attestations.domain.jose import SigningKey, unverified_header, unverified_payload

#: The JWT claims VC-JOSE-COSE adds to the credential (``jose.jwt_claims``): not in the DI form.
JWT_CLAIMS = ("iss", "jti")


def from_token(token: str, load_key: Callable[[str], SigningKey]) -> bytes:
    """The Data Integrity form (JSON) of a ``vc+jwt`` this service signed and stored."""
    kid = unverified_header(token)["kid"]
    credential = {k: v for k, v in unverified_payload(token).items() if k not in JWT_CLAIMS}
    key = load_key(str(kid))
    secured = di.add_proof(credential, key, created=str(credential["validFrom"]))
    return orjson.dumps(secured)


class DataIntegrityForms:
    """``from_token`` with an in-memory cache (by the token's digest)."""

    def __init__(self, load_key: Callable[[str], SigningKey], size: int = 4096) -> None:
        self.load_key = load_key
        self._cache: LRUCache[bytes, bytes] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def of(self, token: str) -> bytes:
        digest = hashlib.sha256(token.encode("ascii")).digest()
        with self._lock:
            found = self._cache.get(digest)
        if found is not None:
            return found
        secured = from_token(token, self.load_key)  # deterministic: a race computes it twice
        with self._lock:
            self._cache[digest] = secured
        return secured
