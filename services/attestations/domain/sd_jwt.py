"""Selective Disclosure for JWTs (SD-JWT, RFC 9901): issuing, processing, Key Binding.

An SD-JWT is an issuer-signed JWT whose payload carries, in place of each selectively
disclosable claim, the SHA-256 digest of a *Disclosure* — ``base64url(UTF-8 JSON [salt, name,
value])`` — in an ``_sd`` array (with ``_sd_alg: "sha-256"``); the compact form is the JWT
followed by each Disclosure, every one ending with ``~``: ``<JWT>~<D1>~<D2>~``. A holder shows
some claims by sending only their Disclosures, with a Key Binding JWT (``typ: kb+jwt``, ``iat``,
``aud``, ``nonce``, ``sd_hash`` over the presentation) after the last ``~`` when the issuer
bound the credential to its key (``cnf.jwk``).

Written here on the JWS code of ``jose`` rather than with a library: the Python reference
implementation (``sd-jwt`` on PyPI, last released 2024-02) lags the RFC, signs with jwcrypto,
and sets no ``kid`` in its released version; the encoding itself is a few dozen lines.

Processing follows RFC 9901 section 7.1 strictly: a Disclosure that is not valid base64url JSON
of the right shape, one given twice, a digest found twice, a name that is already a plain claim
(or ``_sd``/``...``), a Disclosure no digest refers to, are each a refusal (``SdJwtError``) —
never a silent omission. Inputs are bounded (number of Disclosures, nesting).

Pure: keys come in as objects or JWK Sets; nothing here reads a clock unless told to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from services.attestations.domain.jose import (
    SIGNING_ALG,
    SigningKey,
    VerificationError,
    did_of,
    sign_typed,
    verify_compact,
)

SD_ALG = "sha-256"
KB_TYP = "kb+jwt"
SEPARATOR = "~"
#: More Disclosures than any credential of this service has (and its decoys are digests only).
MAX_DISCLOSURES = 64
#: Nesting of objects and arrays walked when processing a payload.
MAX_DEPTH = 16
#: What a Key Binding JWT's ``iat`` may be ahead of the verifier's clock.
KB_CLOCK_SKEW_SECONDS = 300

Check = Literal["format", "issuer-key", "signature", "claims", "disclosures", "key-binding"]


class SdJwtError(Exception):
    """An SD-JWT that does not verify or process; ``check`` names what failed."""

    def __init__(self, check: Check, detail: str) -> None:
        super().__init__(detail)
        self.check: Check = check
        self.detail = detail


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding (ValueError otherwise)."""
    if "=" in text:
        raise ValueError("base64url without padding")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def digest_of(encoded: str) -> str:
    """The ``_sd`` digest of a Disclosure: base64url(SHA-256(its ASCII form))."""
    return b64url(hashlib.sha256(encoded.encode("ascii")).digest())


@dataclass(frozen=True)
class Disclosure:
    encoded: str
    salt: str
    name: str | None  # None: an array element
    value: Any

    @property
    def digest(self) -> str:
        return digest_of(self.encoded)


def disclose(name: str, value: Any, salt: str | None = None) -> Disclosure:
    """A Disclosure of the object property ``name`` with a fresh 128-bit salt."""
    salt = salt or b64url(secrets.token_bytes(16))
    text = json.dumps([salt, name, value], ensure_ascii=False, separators=(",", ":"))
    return Disclosure(b64url(text.encode("utf-8")), salt, name, value)


def _decoy() -> str:
    # RFC 9901 4.2.5: a digest over a random value, indistinguishable from a real one.
    return digest_of(b64url(secrets.token_bytes(16)))


def issue(
    plain: Mapping[str, Any],
    selective: Mapping[str, Any],
    key: SigningKey,
    *,
    typ: str,
    pad_digests_to: int = 0,
) -> str:
    """The compact SD-JWT ``<JWT>~<D1>~…~`` of ``plain`` claims (in the clear) and ``selective``
    ones (each its own Disclosure, in the order given). ``_sd`` is sorted, so the order of the
    claims does not show, and padded with decoy digests up to ``pad_digests_to`` so that their
    number does not show either."""
    clash = set(plain) & set(selective)
    if clash or {"_sd", "_sd_alg", "..."} & (set(plain) | set(selective)):
        raise ValueError(f"claims both plain and selectively disclosable, or reserved: {clash}")
    disclosures = [disclose(name, value) for name, value in selective.items()]
    digests = [d.digest for d in disclosures]
    digests += [_decoy() for _ in range(max(0, pad_digests_to - len(digests)))]
    payload = {**plain, "_sd": sorted(digests), "_sd_alg": SD_ALG}
    jwt = sign_typed(payload, key, typ)
    return SEPARATOR.join([jwt, *(d.encoded for d in disclosures), ""])


@dataclass(frozen=True)
class Parts:
    """The pieces of a compact SD-JWT or SD-JWT+KB."""

    jwt: str
    disclosures: tuple[str, ...]
    kb_jwt: str | None

    @property
    def without_kb(self) -> str:
        """``<JWT>~<D1>~…~``: what a KB-JWT's ``sd_hash`` is computed over."""
        return SEPARATOR.join([self.jwt, *self.disclosures, ""])


def split(token: str) -> Parts:
    text = token.strip()
    if SEPARATOR not in text:
        raise SdJwtError("format", "pas un SD-JWT : aucun « ~ » après le JWT")
    jwt, *rest = text.split(SEPARATOR)
    *disclosures, last = rest
    if not jwt or any(not d for d in disclosures):
        raise SdJwtError("format", "SD-JWT mal formé : un élément entre deux « ~ » est vide")
    if len(disclosures) > MAX_DISCLOSURES:
        raise SdJwtError("format", f"plus de {MAX_DISCLOSURES} divulgations")
    return Parts(jwt, tuple(disclosures), last or None)


def decode_disclosure(encoded: str) -> Disclosure:
    try:
        raw = b64url_decode(encoded)
        item = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise SdJwtError("disclosures", "une divulgation n'est pas du JSON base64url") from None
    if not isinstance(item, list) or len(item) not in (2, 3) or not isinstance(item[0], str):
        raise SdJwtError(
            "disclosures", "une divulgation n'est ni [sel, nom, valeur] ni [sel, valeur]"
        )
    if len(item) == 2:
        return Disclosure(encoded, item[0], None, item[1])
    if not isinstance(item[1], str):
        raise SdJwtError("disclosures", "le nom d'une divulgation n'est pas une chaîne")
    if item[1] in ("_sd", "..."):
        raise SdJwtError("disclosures", f"nom de divulgation réservé : {item[1]!r}")
    return Disclosure(encoded, item[0], item[1], item[2])


@dataclass(frozen=True)
class Processed:
    """A payload with every Disclosure sent put in place (``_sd``, ``_sd_alg`` removed), and
    where each disclosed claim is (``("bloc",)``; an array element by its index)."""

    claims: dict[str, Any]
    disclosed: tuple[tuple[str | int, ...], ...]


def process(payload: Mapping[str, Any], encoded: Sequence[str]) -> Processed:
    """RFC 9901 7.1 step 3 on a verified issuer-signed payload and the Disclosures sent."""
    alg = payload.get("_sd_alg", SD_ALG)
    if alg != SD_ALG:
        raise SdJwtError("disclosures", f"_sd_alg {alg!r} : seul {SD_ALG} est accepté")
    by_digest: dict[str, Disclosure] = {}
    for item in encoded:
        disclosure = decode_disclosure(item)
        if disclosure.digest in by_digest:
            raise SdJwtError("disclosures", "une divulgation est donnée deux fois")
        by_digest[disclosure.digest] = disclosure
    seen: set[str] = set()
    used: set[str] = set()
    disclosed: list[tuple[str | int, ...]] = []

    def walk(node: Any, path: tuple[str | int, ...], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SdJwtError("disclosures", f"imbrication au-delà de {MAX_DEPTH} niveaux")
        if isinstance(node, dict):
            return walk_object(node, path, depth)
        if isinstance(node, list):
            return walk_array(node, path, depth)
        return node

    def take(digest: Any) -> Disclosure | None:
        if not isinstance(digest, str):
            raise SdJwtError("disclosures", "un condensat n'est pas une chaîne")
        if digest in seen:
            raise SdJwtError("disclosures", "un même condensat figure deux fois")
        seen.add(digest)
        found = by_digest.get(digest)
        if found is not None:
            used.add(digest)
        return found

    def walk_object(node: dict[str, Any], path: tuple[str | int, ...], depth: int) -> Any:
        out = {
            k: walk(v, (*path, k), depth + 1)
            for k, v in node.items()
            if k not in ("_sd",) and not (k == "_sd_alg" and not path)
        }
        digests = node.get("_sd", [])
        if not isinstance(digests, list):
            raise SdJwtError("disclosures", "_sd n'est pas un tableau")
        for digest in digests:
            found = take(digest)
            if found is None:
                continue  # a decoy, or a claim the holder did not disclose
            if found.name is None:
                raise SdJwtError("disclosures", "divulgation d'élément de tableau dans un objet")
            if found.name in out:
                raise SdJwtError("disclosures", f"la revendication {found.name!r} existe déjà")
            out[found.name] = walk(found.value, (*path, found.name), depth + 1)
            disclosed.append((*path, found.name))
        return out

    def walk_array(node: list[Any], path: tuple[str | int, ...], depth: int) -> Any:
        out: list[Any] = []
        for element in node:
            if isinstance(element, dict) and list(element) == ["..."]:
                found = take(element["..."])
                if found is None:
                    continue
                if found.name is not None:
                    raise SdJwtError("disclosures", "divulgation de propriété dans un tableau")
                disclosed.append((*path, len(out)))
                out.append(walk(found.value, (*path, len(out)), depth + 1))
            else:
                out.append(walk(element, (*path, len(out)), depth + 1))
        return out

    claims = walk_object(dict(payload), (), 0)
    if len(used) != len(by_digest):
        raise SdJwtError(
            "disclosures", "une divulgation ne correspond à aucun condensat du JWT signé"
        )
    return Processed(claims, tuple(disclosed))


# --- the issuer-signed JWT ------------------------------------------------------------------


def verify_issuer_jwt(
    jwt: str, jwks: Mapping[str, Any], typ: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of the issuer-signed JWT: its ``typ``, its signature by a key of
    ``jwks``, and ``iss`` present and the DID its DID URL ``kid`` names."""
    try:
        header, payload = verify_compact(jwt, jwks, typ)
    except VerificationError as error:
        raise SdJwtError(error.check, error.detail) from None
    kid = str(header["kid"])
    iss = payload.get("iss")
    if not isinstance(iss, str) or not iss:
        raise SdJwtError("claims", "le JWT signé ne nomme pas son émetteur (iss)")
    did = did_of(kid)
    if did is not None and did != iss:
        raise SdJwtError("claims", f"la clé « {kid} » n'est pas une clé de l'émetteur {iss}")
    return header, payload


# --- Key Binding ------------------------------------------------------------------------------


def sd_hash(presentation_without_kb: str) -> str:
    return b64url(hashlib.sha256(presentation_without_kb.encode("ascii")).digest())


def key_binding_jwt(
    presentation_without_kb: str, key: Ed25519PrivateKey, *, aud: str, nonce: str, iat: int
) -> str:
    """The holder's KB-JWT for a presentation ``<JWT>~<D…>~`` (what a wallet does: here for
    tests and tools)."""
    header = {"alg": SIGNING_ALG, "typ": KB_TYP}
    payload = {"iat": iat, "aud": aud, "nonce": nonce, "sd_hash": sd_hash(presentation_without_kb)}
    signing_input = f"{b64url(_json(header))}.{b64url(_json(payload))}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64url(key.sign(signing_input))}"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


#: Holder keys accepted in ``cnf.jwk`` and the JWS algorithms each allows.
HOLDER_KEY_ALGORITHMS: dict[tuple[str, str], frozenset[str]] = {
    ("OKP", "Ed25519"): frozenset({"EdDSA", "Ed25519"}),
    ("EC", "P-256"): frozenset({"ES256"}),
}


def holder_public_jwk(jwk: Mapping[str, Any]) -> dict[str, str]:
    """The public members of a holder's key (for ``cnf.jwk``): an Ed25519 or a P-256 public
    key, checked to be one; ValueError for anything else (a private key included)."""
    if "d" in jwk:
        raise ValueError("a holder key for cnf is a public key: no 'd'")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if (kty, crv) not in HOLDER_KEY_ALGORITHMS:
        raise ValueError("a holder key is an OKP Ed25519 or an EC P-256 JWK")
    members = ("kty", "crv", "x") if kty == "OKP" else ("kty", "crv", "x", "y")
    public = {m: jwk.get(m) for m in members}
    if not all(isinstance(v, str) and len(v) <= 100 for v in public.values()):
        raise ValueError("a holder key's members are base64url strings")
    _public_key(public)  # raises ValueError when it is not a point of the curve
    return {k: str(v) for k, v in public.items()}


def _public_key(jwk: Mapping[str, Any]) -> Ed25519PublicKey | ec.EllipticCurvePublicKey:
    try:
        x = b64url_decode(str(jwk["x"]))
        if jwk["kty"] == "OKP":
            return Ed25519PublicKey.from_public_bytes(x)
        y = b64url_decode(str(jwk["y"]))
        if len(x) != 32 or len(y) != 32:
            raise ValueError("P-256 coordinates are 32 bytes")
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except (KeyError, binascii.Error, ValueError) as error:
        raise ValueError(f"not a valid public key: {error}") from None


def _jws_json_part(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (binascii.Error, ValueError, RecursionError):
        raise SdJwtError("key-binding", f"{what} du KB-JWT : pas du JSON base64url") from None
    if not isinstance(value, dict):
        raise SdJwtError("key-binding", f"{what} du KB-JWT : pas un objet JSON")
    return value


def verify_key_binding(parts: Parts, cnf: Any, *, now: int) -> dict[str, Any]:
    """The KB-JWT's payload, once verified against the holder key ``cnf.jwk``: ``typ kb+jwt``,
    an algorithm of that key, the signature, ``iat`` (not ahead of ``now``), ``aud`` and
    ``nonce`` present (whether they are the verifier's own is for that verifier to say), and
    ``sd_hash`` the hash of this very presentation. SdJwtError("key-binding") otherwise."""
    if parts.kb_jwt is None:
        raise SdJwtError("key-binding", "aucun KB-JWT après le dernier « ~ »")
    jwk = cnf.get("jwk") if isinstance(cnf, Mapping) else None
    if not isinstance(jwk, Mapping):
        raise SdJwtError("key-binding", "le justificatif n'est lié à aucune clé (cnf.jwk)")
    try:
        public = holder_public_jwk(jwk)
        key = _public_key(public)
    except ValueError as error:
        raise SdJwtError("key-binding", f"cnf.jwk inutilisable : {error}") from None
    segments = parts.kb_jwt.split(".")
    if len(segments) != 3:
        raise SdJwtError("key-binding", "le KB-JWT n'est pas un JWS compact")
    header = _jws_json_part(segments[0], "en-tête")
    payload = _jws_json_part(segments[1], "contenu")
    if header.get("typ") != KB_TYP:
        raise SdJwtError("key-binding", f"typ du KB-JWT {header.get('typ')!r}, attendu {KB_TYP}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in HOLDER_KEY_ALGORITHMS[(public["kty"], public["crv"])]:
        raise SdJwtError("key-binding", f"alg {alg!r} ne convient pas à la clé cnf.jwk")
    try:
        signature = b64url_decode(segments[2])
        data = f"{segments[0]}.{segments[1]}".encode("ascii")
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, data)
        else:
            if len(signature) != 64:
                raise InvalidSignature
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        raise SdJwtError("key-binding", "signature du KB-JWT : pas celle de cnf.jwk") from None
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise SdJwtError("key-binding", "le KB-JWT n'a pas d'iat (entier)")
    if iat > now + KB_CLOCK_SKEW_SECONDS:
        raise SdJwtError("key-binding", "l'iat du KB-JWT est dans le futur")
    for claim in ("aud", "nonce"):
        if not isinstance(payload.get(claim), str) or not payload[claim]:
            raise SdJwtError("key-binding", f"le KB-JWT n'a pas de {claim}")
    if payload.get("sd_hash") != sd_hash(parts.without_kb):
        raise SdJwtError("key-binding", "sd_hash du KB-JWT : ce n'est pas cette présentation")
    return payload
