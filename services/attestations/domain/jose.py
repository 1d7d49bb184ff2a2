"""Securing credentials as VC-JOSE-COSE: a compact JWS whose payload is the credential itself.

Issued credentials are signed with Ed25519 (``alg: EdDSA``) and the protected header
``{"alg": "EdDSA", "typ": "vc+jwt", "cty": "vc", "kid": ...}`` whose ``kid`` is the DID URL of
the verification method (``did:web:…#<thumbprint>``: VC-JOSE-COSE asks for an absolute URL to a
verification method); the payload is the credential itself (no ``vc`` claim) with the JWT claims
``iss`` (the issuer's id) and ``jti`` (the credential's id) added by ``sign_credential``. The
verifier also accepts the fully-specified ``Ed25519`` (RFC 9864) and ES256 on P-256 keys, as the
W3C VC-JOSE-COSE test vectors use them. The algorithm is fixed by the issuer's key, never taken
from the token alone.

Tokens signed before the DID URL kid (a bare RFC 7638 thumbprint as ``kid``, no ``iss`` nor
``jti``) keep verifying: a bare kid finds the key published under ``<did>#<kid>``, and the
other way round (a saved JWK Set of bare kids checks a new token).

Pure: keys come in as objects or JWK Sets, nothing is read or fetched here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwa import EdDSAAlgorithm
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry

MEDIA_TYPE = "application/vc+jwt"
TYP = "vc+jwt"
CTY = "vc"
SIGNING_ALG = "EdDSA"

Check = Literal["signature", "issuer-key", "format", "claims"]


class _EdDSA(EdDSAAlgorithm):
    # joserfc 1.8 warns on every use of "EdDSA" (deprecated by RFC 9864 in favour of "Ed25519");
    # VC-JOSE-COSE and this project's contract name "EdDSA", so the warning is only noise
    # (joserfc warns when the text is truthy).
    security_warning = ""


class _Registry(JWSRegistry):
    algorithms = {**JWSRegistry.algorithms, SIGNING_ALG: _EdDSA()}  # noqa: RUF012


#: The algorithms a verification key allows, by (kty, crv).
_KEY_ALGORITHMS: dict[tuple[str, str], frozenset[str]] = {
    ("OKP", "Ed25519"): frozenset({"EdDSA", "Ed25519"}),
    ("EC", "P-256"): frozenset({"ES256"}),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """An issuer's Ed25519 signing key and the ``kid`` under which its public half is published."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid=kid, private_key=Ed25519PrivateKey.generate())

    @functools.cached_property
    def jose_key(self) -> OKPKey:
        """The key as a joserfc object, built once (for callers that sign with joserfc)."""
        return OKPKey.import_key(self.private_key, {"kid": self.kid, "alg": SIGNING_ALG})

    @property
    def protected_header(self) -> dict[str, str]:
        """The JWS protected header of every token this key signs."""
        return {"alg": SIGNING_ALG, "typ": TYP, "cty": CTY, "kid": self.kid}

    @functools.cached_property
    def _header_segment(self) -> bytes:
        # BASE64URL(UTF8(JWS Protected Header)) || '.', the same for every signature of this key.
        return _b64url(orjson.dumps(self.protected_header)).encode("ascii") + b"."

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, as published in the issuer's JWK Set and DID document."""
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(self.private_key.public_key().public_bytes_raw()),
            "kid": self.kid,
            "alg": SIGNING_ALG,
            "use": "sig",
        }


def did_of(kid: str) -> str | None:
    """The DID of a DID URL kid (``did:web:example.org#k1`` -> ``did:web:example.org``); None for
    a bare kid (what tokens signed before DID URL kids carry)."""
    did, hash_sign, fragment = kid.partition("#")
    return did if hash_sign and fragment and did.startswith("did:") else None


def fragment_of(kid: str) -> str:
    """What follows ``#`` in a DID URL kid, or the bare kid itself."""
    return kid.rpartition("#")[2]


def issuer_id(credential: Mapping[str, Any]) -> Any:
    """The credential's issuer id (``issuer`` is a URL or an object with an ``id``)."""
    issuer = credential.get("issuer")
    return issuer.get("id") if isinstance(issuer, Mapping) else issuer


def jwt_claims(credential: Mapping[str, Any]) -> dict[str, Any]:
    """The credential with the JWT claims VC-JOSE-COSE lets a JWT verifier read first: ``iss``
    (the issuer's id) and ``jti`` (the credential's id, when it has one)."""
    iss = issuer_id(credential)
    if not isinstance(iss, str) or not iss:
        raise ValueError("a credential to sign names its issuer (issuer.id)")
    claims = {**credential, "iss": iss}
    if isinstance(credential.get("id"), str):
        claims["jti"] = credential["id"]
    return claims


def sign_credential(credential: Mapping[str, Any], key: SigningKey) -> str:
    """The credential secured as ``vc+jwt`` with ``iss`` and ``jti``; a DID URL kid must be a
    verification method of the credential's issuer (ValueError otherwise)."""
    claims = jwt_claims(credential)
    did = did_of(key.kid)
    if did is not None and did != claims["iss"]:
        raise ValueError(f"key {key.kid!r} is not a verification method of {claims['iss']!r}")
    return sign(claims, key)


def sign_typed(payload: Mapping[str, Any], key: SigningKey, typ: str) -> str:
    """A compact JWS of ``payload`` under the header ``{"alg": "EdDSA", "typ": typ, "kid": …}``:
    what the other JOSE forms of this service (``dc+sd-jwt``, ``statuslist+jwt``) are signed as."""
    header = {"alg": SIGNING_ALG, "typ": typ, "kid": key.kid}
    signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(payload))}".encode()
    signature = _b64url(key.private_key.sign(signing_input))
    return f"{signing_input.decode('ascii')}.{signature}"


def sign(payload: dict[str, Any], key: SigningKey) -> str:
    """The credential secured as a compact JWS (media type ``application/vc+jwt``).

    RFC 7515 compact serialization written out directly rather than through
    ``joserfc.jws.serialize_compact``: the header segment is computed once per key and the
    payload serialized with orjson, so a signature costs little more than Ed25519 itself. Ed25519
    is deterministic, so the token is byte-for-byte what joserfc produces (the tests check it).
    """
    signing_input = key._header_segment + base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(
        b"="
    )
    signature = base64.urlsafe_b64encode(key.private_key.sign(signing_input)).rstrip(b"=")
    return (signing_input + b"." + signature).decode("ascii")


class VerificationError(Exception):
    """A token that does not verify; ``check`` names what failed."""

    def __init__(self, check: Check, detail: str) -> None:
        super().__init__(detail)
        self.check: Check = check
        self.detail = detail


def _segments(token: str | bytes) -> list[str]:
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise VerificationError("format", "a compact JWS is ASCII text") from None
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise VerificationError("format", "not a compact JWS (three base64url parts)")
    return parts


def _b64url_json(segment: str, what: str) -> Any:
    try:
        raw = base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as error:  # RecursionError: deep nesting
        raise VerificationError("format", f"the JWS {what} is not base64url JSON") from error


def unverified_header(token: str | bytes) -> dict[str, Any]:
    """The protected header, decoded without checking anything else (to pick a key)."""
    header = _b64url_json(_segments(token)[0], "header")
    if not isinstance(header, dict):
        raise VerificationError("format", "the JWS header is not a JSON object")
    return header


def unverified_payload(token: str | bytes) -> dict[str, Any]:
    """The payload, decoded without checking the signature: for a token this service signed
    and stored itself (never for one it was sent)."""
    payload = _b64url_json(_segments(token)[1], "payload")
    if not isinstance(payload, dict):
        raise VerificationError("format", "the JWS payload is not a JSON object")
    return payload


@functools.lru_cache(maxsize=256)
def _public_key(kty: str, crv: str, x: str, y: str | None) -> OKPKey | ECKey:
    if kty == "OKP":
        return OKPKey.import_key({"kty": kty, "crv": crv, "x": x})
    return ECKey.import_key({"kty": kty, "crv": crv, "x": x, "y": y or ""})


def _find_key(jwks: Mapping[str, Any], kid: str) -> Mapping[str, Any]:
    """The key published under ``kid``; failing that, a bare kid (a token signed before DID URL
    kids) finds ``<did>#<kid>``, and a DID URL kid finds its bare fragment (a JWK Set saved
    before). Which issuer a DID URL kid names is checked against the credential afterwards."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise VerificationError("issuer-key", "the issuer's key set has no 'keys' list")
    candidates = [
        jwk for jwk in keys if isinstance(jwk, Mapping) and isinstance(jwk.get("kid"), str)
    ]
    for jwk in candidates:
        if jwk["kid"] == kid:
            return jwk
    wanted = fragment_of(kid)
    for jwk in candidates:
        published: str = jwk["kid"]
        # One side bare, the other a DID URL with that fragment.
        if (did_of(kid) is None) != (did_of(published) is None) and fragment_of(
            published
        ) == wanted:
            return jwk
    raise VerificationError("issuer-key", f"no key '{kid}' among the issuer's published keys")


def check_claims(kid: str, payload: Mapping[str, Any]) -> None:
    """VC-JOSE-COSE's bindings between the JWT and the credential it carries: ``iss`` (when
    present) is the issuer's id, ``jti`` (when present) the credential's id, and a DID URL kid
    is a verification method of the issuer's DID. VerificationError "claims" otherwise."""
    issuer = issuer_id(payload)
    if "iss" in payload and payload["iss"] != issuer:
        raise VerificationError(
            "claims",
            f"claim 'iss' ({payload['iss']!r}) is not the credential's issuer ({issuer!r})",
        )
    if "jti" in payload and payload["jti"] != payload.get("id"):
        raise VerificationError(
            "claims",
            f"claim 'jti' ({payload['jti']!r}) is not the credential's id ({payload.get('id')!r})",
        )
    did = did_of(kid)
    if did is not None and did != issuer:
        raise VerificationError(
            "claims", f"key '{kid}' is not a verification method of the issuer ({issuer!r})"
        )


def verify(token: str | bytes, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The credential of a ``vc+jwt`` token whose signature verifies with a key of ``jwks``.

    ``jwks`` is a JWK Set (``{"keys": [...]}``), retired keys included. Raises
    VerificationError with ``check`` "format" (not a vc+jwt), "issuer-key" (no usable key for its
    ``kid``), "signature" (the signature does not verify with that key) or "claims" (it does,
    but ``iss``, ``jti`` or the kid's DID contradict the credential: ``check_claims``).
    """
    header, payload = verify_compact(token, jwks, TYP)
    check_claims(header["kid"], payload)
    return payload


def verify_compact(
    token: str | bytes, jwks: Mapping[str, Any], typ_expected: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a compact JWS of type ``typ_expected`` (also accepted with its
    ``application/`` prefix, any case) whose signature verifies with the key of ``jwks`` its
    ``kid`` names; VerificationError as ``verify`` says, the claims left unchecked."""
    header = unverified_header(token)
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in (typ_expected, f"application/{typ_expected}"):
        raise VerificationError("format", f"header typ is {typ!r}, expected '{typ_expected}'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise VerificationError("issuer-key", "the JWS header names no key (kid)")
    jwk = _find_key(jwks, kid)

    kty, crv, x, y = jwk.get("kty"), jwk.get("crv"), jwk.get("x"), jwk.get("y")
    allowed = _KEY_ALGORITHMS.get((str(kty), str(crv)))
    if allowed is None or not isinstance(x, str) or (kty == "EC" and not isinstance(y, str)):
        raise VerificationError("issuer-key", f"key '{kid}' is not a supported public key")
    if jwk.get("use", "sig") != "sig" or ("alg" in jwk and jwk["alg"] not in allowed):
        raise VerificationError("issuer-key", f"key '{kid}' is not a signing key for this use")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:  # a list or an object: not hashable
        raise VerificationError(
            "signature", f"alg {alg!r} does not match key '{kid}' ({', '.join(sorted(allowed))})"
        )
    try:
        public_key = _public_key(str(kty), str(crv), x, y if isinstance(y, str) else None)
    except (JoseError, ValueError) as error:
        raise VerificationError("issuer-key", f"key '{kid}' is malformed: {error}") from None

    registry = _Registry(algorithms=[str(alg)], strict_check_header=False)
    try:
        verified = jws.deserialize_compact(token, public_key, registry=registry)
    except BadSignatureError:
        raise VerificationError(
            "signature", f"the signature does not verify with '{kid}'"
        ) from None
    except (JoseError, ValueError) as error:
        raise VerificationError("format", f"malformed JWS: {error}") from None

    try:
        payload = json.loads(verified.payload)
    except (ValueError, RecursionError):
        raise VerificationError("format", "the JWS payload is not JSON") from None
    if not isinstance(payload, dict):
        raise VerificationError("format", "the JWS payload is not a credential (JSON object)")
    return header, payload
