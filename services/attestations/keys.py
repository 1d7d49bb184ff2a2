"""The issuer's Ed25519 signing keys, as files: one private JWK per key (mode 0600) and an
``active`` pointer. Rotation adds a key and moves the pointer; retired keys stay published so
every attestation signed before a rotation still verifies."""

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


@dataclass
class KeyStore:
    directory: Path

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
        }
        write_private(self.directory / f"{kid}.jwk", json.dumps(jwk).encode())
        write_private(self._active_file, kid.encode())
        return SigningKey(kid=kid, private_key=private)

    def active_kid(self) -> str:
        return self._active_file.read_text().strip()

    def active(self) -> SigningKey:
        return self.load(self.active_kid())

    def load(self, kid: str) -> SigningKey:
        jwk = json.loads((self.directory / f"{kid}.jwk").read_text())
        raw = base64.urlsafe_b64decode(jwk["d"] + "=" * (-len(jwk["d"]) % 4))
        return SigningKey(kid=kid, private_key=Ed25519PrivateKey.from_private_bytes(raw))

    def all_keys(self) -> list[SigningKey]:
        return [self.load(p.stem) for p in sorted(self.directory.glob("*.jwk"))]

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every key, active and retired, public parts only."""
        return {"keys": [key.public_jwk() for key in self.all_keys()]}
