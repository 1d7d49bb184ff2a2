"""The issuer's Ed25519 signing keys, as files: one private JWK per key (mode 0600), named by
its RFC 7638 thumbprint, and an ``active`` pointer. Rotation adds a key and moves the pointer;
retired keys stay published so every attestation signed before a rotation still verifies.

A key is published (JWS ``kid``, JWK Set, DID document) under the DID URL of its verification
method, ``<did>#<thumbprint>``, when the store knows the issuer's DID. Tokens signed before
carry the bare thumbprint as kid: a key file written before DID URL kids (no ``"did_url_kid"``
member) is published a second time under that bare kid, so a verifier that matches a token's kid
in the JWK Set finds it; keys created since never signed with a bare kid and are not."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.attestations.domain.jose import SigningKey
from services.runtime.secrets import write_private


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public_raw: bytes) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 public key: a stable, content-derived kid."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64(public_raw)}, separators=(",", ":")
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


#: Written into each key file created since kids became DID URLs: this key never signed a token
#: under its bare thumbprint (so the JWK Set need not publish it under that kid).
DID_URL_KID = "did_url_kid"


@dataclass
class KeyStore:
    directory: Path
    #: The issuer's DID (``did:web:…``): keys are published as ``<did>#<thumbprint>``; without
    #: it (tools that only manage the files), under the bare thumbprint.
    did: str | None = None

    def kid(self, name: str) -> str:
        """The published kid of the key file ``name`` (its thumbprint)."""
        return f"{self.did}#{name}" if self.did else name

    @property
    def _active_file(self) -> Path:
        return self.directory / "active"

    def ensure(self) -> SigningKey:
        """The active key, creating the first one if there is none."""
        if not self._active_file.exists():
            return self.rotate()
        return self.active()

    def rotate(self) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        kid = thumbprint(raw_public)
        raw_private = private.private_bytes_raw()
        jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "kid": kid,
            "x": _b64(raw_public),
            "d": _b64(raw_private),
            DID_URL_KID: True,
        }
        write_private(self.directory / f"{kid}.jwk", json.dumps(jwk).encode())
        write_private(self._active_file, kid.encode())
        return SigningKey(kid=self.kid(kid), private_key=private)

    def active_name(self) -> str:
        """The active key's file name (its thumbprint)."""
        return self._active_file.read_text().strip()

    def active_kid(self) -> str:
        """The active key's published kid."""
        return self.kid(self.active_name())

    def active(self) -> SigningKey:
        return self.load(self.active_name())

    def _read(self, name: str) -> dict[str, object]:
        jwk: dict[str, object] = json.loads((self.directory / f"{name}.jwk").read_text())
        return jwk

    def _key(self, name: str, jwk: dict[str, object]) -> SigningKey:
        d = str(jwk["d"])
        raw = base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))
        return SigningKey(kid=self.kid(name), private_key=Ed25519PrivateKey.from_private_bytes(raw))

    def load(self, kid: str) -> SigningKey:
        """The key of a file name (thumbprint) or of a published kid (``<did>#<thumbprint>``)."""
        name = kid.rpartition("#")[2]
        return self._key(name, self._read(name))

    def names(self) -> list[str]:
        return [p.stem for p in sorted(self.directory.glob("*.jwk"))]

    def all_keys(self) -> list[SigningKey]:
        return [self.load(name) for name in self.names()]

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every key, active and retired, public parts only, under its published kid; then each
        key that signed before DID URL kids once more under its bare thumbprint."""
        keys, bare = [], []
        for name in self.names():
            jwk = self._read(name)
            public = self._key(name, jwk).public_jwk()
            keys.append(public)
            if self.did and not jwk.get(DID_URL_KID):
                bare.append({**public, "kid": name})
        return {"keys": keys + bare}
