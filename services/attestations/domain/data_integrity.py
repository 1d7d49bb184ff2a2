"""Securing credentials with an embedded Data Integrity proof, cryptosuite ``eddsa-rdfc-2022``
(W3C "Data Integrity EdDSA Cryptosuites v1.0", §3.3): the form Open Badges 3.0 certification uses,
next to the VC-JOSE-COSE one (``jose.py``) for the same credential.

- Transformation: the document without its ``proof``, and the proof options without
  ``proofValue`` (with the document's ``@context``), each canonicalized with RDFC-1.0 (pyld's
  URDNA2015, the same algorithm under its former name) to N-Quads;
- hashing: ``hashData = SHA-256(canonical proof options) || SHA-256(canonical document)``;
- proof: Ed25519 over ``hashData``, ``proofValue`` = multibase base58-btc (``z…``).

JSON-LD processing fetches nothing: ``ContextLoader`` serves the contexts vendored under
``services/attestations/contexts/`` and refuses any other URL (``UnknownContext``, naming it).
As jsonld.js' "safe mode" does for the JavaScript verifiers, a property that JSON-LD would drop
(not mapped to an IRI, so not signed) is an error, not silently left out of the signature.

Pure: keys come in as objects, nothing is read from a clock, a store or the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

from cachetools import LRUCache
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pyld import jsonld
from pyld.context_resolver import ContextResolver

from services.attestations.domain.credential import format_datetime
from services.attestations.domain.jose import SigningKey

PROOF_TYPE = "DataIntegrityProof"
CRYPTOSUITE = "eddsa-rdfc-2022"
PROOF_PURPOSE = "assertionMethod"
#: The media type of a credential secured with an embedded proof (VC 2.0, §6.3).
MEDIA_TYPE = "application/vc+ld+json"

#: The vendored contexts, by the URL credentials name them with (contexts/README.md).
CONTEXT_FILES = {
    "https://www.w3.org/ns/credentials/v2": "credentials-v2.jsonld",
    "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json": "ob-v3p0-context-3.0.3.json",
}

#: Multicodec prefix of an Ed25519 public key (0xed, varint-encoded) in a Multikey.
_ED25519_PUB = b"\xed\x01"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
#: XML Schema dateTimeStamp, as Data Integrity's ``created`` and ``expires`` are.
_DATETIME_STAMP = re.compile(r"-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")

Check = Literal["format", "context", "proof", "issuer-key", "signature"]


class ProofError(Exception):
    """A secured document that does not verify; ``check`` names what failed."""

    def __init__(self, check: Check, detail: str) -> None:
        super().__init__(detail)
        self.check: Check = check
        self.detail = detail


class UnknownContext(Exception):
    """A ``@context`` URL that is not one of the vendored contexts (nothing is fetched)."""

    def __init__(self, url: str) -> None:
        super().__init__(f"unknown JSON-LD context {url!r}: only vendored contexts are served")
        self.url = url


class DroppedProperty(Exception):
    """A property JSON-LD would drop (not signed): refused, as jsonld.js' safe mode does."""


# --- base58-btc and Multikey -----------------------------------------------------------------


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rest = divmod(number, 58)
        out.append(_B58[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """ValueError on a character outside the base58-btc alphabet."""
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise ValueError(f"not base58-btc: {char!r}")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def multibase_b58(data: bytes) -> str:
    return "z" + b58encode(data)


def public_key_multibase(public_raw: bytes) -> str:
    """An Ed25519 public key as a Multikey ``publicKeyMultibase`` (``z6Mk…``)."""
    if len(public_raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return multibase_b58(_ED25519_PUB + public_raw)


def public_key_from_multibase(value: str) -> bytes:
    """The raw Ed25519 public key of a ``publicKeyMultibase``; ValueError otherwise."""
    if not value.startswith("z"):
        raise ValueError("publicKeyMultibase is base58-btc multibase (prefix 'z')")
    raw = b58decode(value[1:])
    if len(raw) != 34 or not raw.startswith(_ED25519_PUB):
        raise ValueError("not an Ed25519 Multikey")
    return raw[2:]


# --- JSON-LD: vendored contexts only ---------------------------------------------------------


@cache
def vendored_contexts() -> dict[str, Any]:
    """The vendored contexts, parsed, by URL."""
    folder = resources.files("services.attestations") / "contexts"
    return {
        url: json.loads((folder / name).read_text("utf-8")) for url, name in CONTEXT_FILES.items()
    }


class ContextLoader:
    """A JSON-LD document loader that serves known contexts and refuses every other URL, with
    its own cache of processed contexts (pyld's shared cache is keyed by URL alone: a loader
    with other documents under the same URL must not see these). One canonicalization at a time
    per loader: pyld's caches are not thread-safe, and it is CPU-bound Python anyway."""

    def __init__(self, contexts: Mapping[str, Any] | None = None) -> None:
        self.contexts = dict(vendored_contexts() if contexts is None else contexts)
        self._cache: LRUCache[str, Any] = LRUCache(maxsize=64)
        self._lock = threading.Lock()

    def with_contexts(self, more: Mapping[str, Any]) -> ContextLoader:
        """A loader serving these contexts as well (the tests' vectors name an example one)."""
        return ContextLoader({**self.contexts, **more})

    def __call__(self, url: str, options: Any = None) -> dict[str, Any]:
        document = self.contexts.get(url)
        if document is None:
            raise UnknownContext(url)
        return {"contextUrl": None, "documentUrl": url, "document": document}

    def canonize(self, document: Mapping[str, Any]) -> str:
        """RDFC-1.0 canonical N-Quads of ``document``. Raises UnknownContext for a context that
        is not served, DroppedProperty for a property that would not be signed, ValueError for
        what JSON-LD refuses otherwise."""

        def dropped(prop: Any) -> None:
            raise DroppedProperty(
                f"property {prop!r} is not defined by the credential's contexts (not signed)"
            )

        options = {
            "algorithm": "URDNA2015",
            "format": "application/n-quads",
            "base": None,
            "rdfDirection": "i18n-datatype",
            "documentLoader": self,
        }
        with self._lock:
            options["contextResolver"] = ContextResolver(self._cache, self)
            try:
                result = jsonld.JsonLdProcessor(on_property_dropped=dropped).normalize(
                    dict(document), options
                )
            except jsonld.JsonLdError as error:
                raise _cause(error) from None
        if not isinstance(result, str):  # pragma: no cover - "format" asks for a string
            raise ValueError("canonicalization did not give N-Quads")
        return result


def _cause(error: BaseException) -> Exception:
    """The first UnknownContext or DroppedProperty under a JsonLdError; else a ValueError."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, UnknownContext | DroppedProperty):
            return seen
        seen = seen.__cause__ or seen.__context__
    return ValueError(f"not JSON-LD: {error}".split("\n")[0][:300])


@cache
def loader() -> ContextLoader:
    """The service's loader (vendored contexts only), made once."""
    return ContextLoader()


# --- proofs ----------------------------------------------------------------------------------


def proof_options(verification_method: str, created: str) -> dict[str, Any]:
    return {
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": created,
        "verificationMethod": verification_method,
        "proofPurpose": PROOF_PURPOSE,
    }


def hash_data(
    unsecured: Mapping[str, Any], options: Mapping[str, Any], canon: ContextLoader
) -> bytes:
    """``SHA-256(canonical proof options) || SHA-256(canonical document)`` (§3.3.4), the
    proof options carrying the document's ``@context`` (§3.3.1, step 4)."""
    config = {k: v for k, v in options.items() if k != "proofValue"}
    config["@context"] = unsecured.get("@context")
    proof_hash = hashlib.sha256(canon.canonize(config).encode("utf-8")).digest()
    document_hash = hashlib.sha256(canon.canonize(unsecured).encode("utf-8")).digest()
    return proof_hash + document_hash


def add_proof(
    credential: Mapping[str, Any],
    key: SigningKey,
    *,
    created: datetime | str,
    canon: ContextLoader | None = None,
) -> dict[str, Any]:
    """The credential with a ``proof`` (a list of one ``DataIntegrityProof``: Open Badges 3.0's
    schema wants an array) by ``key``, whose kid, the DID URL of its verification method, is the
    proof's ``verificationMethod``. Ed25519 is deterministic: the same credential, key and
    ``created`` give the same document."""
    if "proof" in credential:
        raise ValueError("the credential is secured already")
    stamp = created if isinstance(created, str) else format_datetime(created)
    options = proof_options(key.kid, stamp)
    data = hash_data(credential, options, canon or loader())
    proof = {**options, "proofValue": multibase_b58(key.private_key.sign(data))}
    return {**credential, "proof": [proof]}


@dataclass(frozen=True)
class Verified:
    """A secured document whose proof verifies: the document without its proof, and the proof."""

    credential: dict[str, Any]
    proof: dict[str, Any]


#: The public key of a verification method id; None when it is not one the verifier trusts.
KeyResolver = Callable[[str], Ed25519PublicKey | None]


def the_proof(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document's one proof (an object, or a list of one); ProofError "proof" otherwise."""
    proof = document.get("proof")
    if isinstance(proof, list):
        if len(proof) != 1:
            raise ProofError("proof", f"{len(proof)} proofs: exactly one is expected")
        proof = proof[0]
    if not isinstance(proof, dict):
        raise ProofError("proof", "no Data Integrity proof (member 'proof')")
    if proof.get("type") != PROOF_TYPE:
        raise ProofError("proof", f"proof type {proof.get('type')!r}, expected {PROOF_TYPE!r}")
    if proof.get("cryptosuite") != CRYPTOSUITE:
        raise ProofError(
            "proof", f"cryptosuite {proof.get('cryptosuite')!r}, expected {CRYPTOSUITE!r}"
        )
    if proof.get("proofPurpose") != PROOF_PURPOSE:
        raise ProofError(
            "proof", f"proofPurpose {proof.get('proofPurpose')!r}, expected {PROOF_PURPOSE!r}"
        )
    for name in ("created", "expires"):
        value = proof.get(name)
        if value is not None and (
            not isinstance(value, str) or _DATETIME_STAMP.fullmatch(value) is None
        ):
            raise ProofError("proof", f"proof {name} {value!r} is not an XML dateTimeStamp")
    value = proof.get("proofValue")
    if not isinstance(value, str) or not value.startswith("z"):
        raise ProofError("proof", "proofValue is not multibase base58-btc ('z…')")
    if not isinstance(proof.get("verificationMethod"), str):
        raise ProofError("proof", "the proof names no verificationMethod (a URL)")
    return proof


def verify(
    document: Mapping[str, Any], resolve: KeyResolver, canon: ContextLoader | None = None
) -> Verified:
    """Verify the embedded ``eddsa-rdfc-2022`` proof of ``document`` (§3.3.2) with the key
    ``resolve`` gives for its verificationMethod. Raises ProofError naming the check: "proof"
    (not such a proof), "issuer-key" (a verification method not trusted), "context" (a context
    that is not vendored, or a property the contexts do not define), "format" (not JSON-LD),
    "signature"."""
    proof = the_proof(document)
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    context = unsecured.get("@context")
    if "@context" in proof:
        # §3.3.2 step 4: the document's @context starts with the proof's, in the same order.
        wanted = proof["@context"] if isinstance(proof["@context"], list) else [proof["@context"]]
        have = context if isinstance(context, list) else [context]
        if have[: len(wanted)] != wanted:
            raise ProofError("proof", "the proof's @context is not the document's")
    method = proof["verificationMethod"]
    public_key = resolve(method)
    if public_key is None:
        raise ProofError("issuer-key", f"verification method {method!r} is not the issuer's")
    # 64 bytes are ~88 base58 characters: longer is not a signature (and base58 decoding is
    # quadratic: 60,000 characters held the CPU for half a second).
    if len(proof["proofValue"]) > 100:
        raise ProofError("signature", "an Ed25519 signature is 64 bytes")
    try:
        signature = b58decode(proof["proofValue"][1:])
    except ValueError:
        raise ProofError("proof", "proofValue is not base58-btc") from None
    if len(signature) != 64:
        raise ProofError("signature", "an Ed25519 signature is 64 bytes")
    options = {k: v for k, v in proof.items() if k not in ("proofValue", "@context")}
    try:
        data = hash_data(unsecured, options, canon or loader())
    except UnknownContext as error:
        raise ProofError("context", f"contexte JSON-LD inconnu : {error.url}") from None
    except DroppedProperty as error:
        raise ProofError("context", str(error)) from None
    except Exception as error:  # whatever else JSON-LD processing raises on hostile input
        raise ProofError("format", f"not JSON-LD: {error}"[:300]) from None
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise ProofError("signature", f"the proof does not verify with {method!r}") from None
    return Verified(credential=unsecured, proof=proof)
