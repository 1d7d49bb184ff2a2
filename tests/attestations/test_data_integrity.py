"""The Data Integrity form (eddsa-rdfc-2022): the official vectors canonicalize, hash and verify
as published; a credential of ours round-trips, is refused when tampered, names only vendored
contexts; hostile JSON is a failed check."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.attestations.data_integrity_forms import from_token
from services.attestations.domain import credential as vc
from services.attestations.domain import data_integrity as di
from services.attestations.domain.jose import SigningKey, sign_credential
from services.attestations.identity import did_document
from services.attestations.verification_di import check_data_integrity
from tests.attestations.test_credential import CERTIFICATION, ISSUED, build

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "data" / "standards" / "vectors"
CONTEXTS = ROOT / "services" / "attestations" / "contexts"
EXAMPLES_V2 = "https://www.w3.org/ns/credentials/examples/v2"
DID = "did:web:127.0.0.1%3A8102"

#: The vendored contexts are the published files, unchanged (contexts/README.md).
CONTEXT_SHA256 = {
    "credentials-v2.jsonld": "59955ced6697d61e03f2b2556febe5308ab16842846f5b586d7f1f7adec92734",
    "ob-v3p0-context-3.0.3.json": (
        "ef2fa9c7846dce233cc166b43639027278be4ee44f00bb1d45c75de2dd0cd761"
    ),
}
#: The Open Badges 3.0 vector's key (1EdTech, "Linked Data Proof Test Vector for OB 3.0").
OB3_PUBLIC_HEX = "4bdeafde2ea8beefadd8c699b5c7e0704cf51154d52e17b20b71337ca04cc5a5"
OB3_MULTIKEY = "z6MkjZRZv3aez3r18pB1RBFJR1kwUVJ5jHt92JmQwXbd5hwi"
OB3_HASH_DATA = (
    "d34009cea0dbc1ca941e09dc01c8c9d3e3ce3c5b853f67ee44698dcea10f5d19"
    "87f65a76d40146205e3b3e06cb0fbd153f97f9ce70372390f52566bb7f9e0773"
)


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text("utf-8"))


def unsecured(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "proof"}


def proof_config(document: dict[str, Any]) -> dict[str, Any]:
    proof = document["proof"]
    proof = proof[0] if isinstance(proof, list) else proof
    return {
        **{k: v for k, v in proof.items() if k != "proofValue"},
        "@context": document["@context"],
    }


@pytest.fixture(scope="module")
def w3c_loader() -> di.ContextLoader:
    """Our loader plus the examples context the W3C vector names (the tests only)."""
    return di.loader().with_contexts({EXAMPLES_V2: load("credentials_examples_v2_context.jsonld")})


@pytest.mark.parametrize("name", sorted(CONTEXT_SHA256))
def test_vendored_context_is_the_published_file(name: str) -> None:
    assert hashlib.sha256((CONTEXTS / name).read_bytes()).hexdigest() == CONTEXT_SHA256[name]


def test_w3c_vector_canonicalizes_and_verifies(w3c_loader: di.ContextLoader) -> None:
    signed = load("eddsa-rdfc-2022_signedDataInt.json")
    canon_doc = (VECTORS / "eddsa-rdfc-2022_canonDocDataInt.txt").read_text("utf-8")
    canon_proof = (VECTORS / "eddsa-rdfc-2022_proofCanonDataInt.txt").read_text("utf-8")
    assert w3c_loader.canonize(unsecured(signed)) == canon_doc
    assert w3c_loader.canonize(proof_config(signed)) == canon_proof
    key_pair = load("eddsa_keyPair.json")
    public = Ed25519PublicKey.from_public_bytes(
        di.public_key_from_multibase(key_pair["publicKeyMultibase"])
    )
    method = signed["proof"]["verificationMethod"]
    assert method.endswith("#" + key_pair["publicKeyMultibase"])
    resolve = {method: public}.get
    verified = di.verify(signed, resolve, w3c_loader)
    assert verified.credential == unsecured(signed)

    tampered = copy.deepcopy(signed)
    tampered["credentialSubject"]["alumniOf"] = "The School of Forgeries"
    with pytest.raises(di.ProofError) as refused:
        di.verify(tampered, resolve, w3c_loader)
    assert refused.value.check == "signature"
    # The proof options are signed too.
    later = copy.deepcopy(signed)
    later["proof"]["created"] = "2023-02-24T23:36:39Z"
    with pytest.raises(di.ProofError, match="does not verify"):
        di.verify(later, resolve, w3c_loader)


def test_w3c_vector_needs_its_context() -> None:
    """Our own loader serves only our contexts: the example one is refused, by name."""
    with pytest.raises(di.ProofError) as refused:
        di.verify(load("eddsa-rdfc-2022_signedDataInt.json"), lambda _: _any_public_key())
    assert refused.value.check == "context"
    assert EXAMPLES_V2 in refused.value.detail


def _any_public_key() -> Ed25519PublicKey:
    return SigningKey.generate("k").private_key.public_key()


def test_open_badges_vector_canonicalizes_hashes_and_verifies() -> None:
    signed = load("ob3_signed-credential.json")
    assert di.loader().canonize(unsecured(signed)) == (
        VECTORS / "ob3_document-canon.txt"
    ).read_text("utf-8")
    assert di.loader().canonize(proof_config(signed)) == (
        VECTORS / "ob3_proof-canon.txt"
    ).read_text("utf-8")
    assert di.hash_data(unsecured(signed), signed["proof"], di.loader()).hex() == OB3_HASH_DATA
    raw = bytes.fromhex(OB3_PUBLIC_HEX)
    assert di.public_key_multibase(raw) == OB3_MULTIKEY
    assert di.public_key_from_multibase(OB3_MULTIKEY) == raw
    public = Ed25519PublicKey.from_public_bytes(raw)
    di.verify(signed, {signed["proof"]["verificationMethod"]: public}.get)
    signed["credentialSubject"]["achievement"]["name"] = "Teamwork!"
    with pytest.raises(di.ProofError, match="does not verify"):
        di.verify(signed, {signed["proof"]["verificationMethod"]: public}.get)


def test_base58_round_trips() -> None:
    for data in (b"", b"\0", b"\0\0\x01", bytes(range(64)), b"\xff" * 33):
        assert di.b58decode(di.b58encode(data)) == data
    with pytest.raises(ValueError, match="base58"):
        di.b58decode("0OIl")


KEY = SigningKey.generate(f"{DID}#k1")
FACTS = vc.AwardFacts(
    awarded_on=date(2026, 7, 3),
    route="exam",
    session="2026-06",
    mention="Bien",
    exam_center=vc.ExamCenterInfo(uai="0750001A", name="Lycée Jean Moulin"),
)


def our_credential() -> dict[str, Any]:
    return build(CERTIFICATION, facts=FACTS)


def did_doc(*keys: SigningKey) -> dict[str, Any]:
    return did_document(DID, {"keys": [k.public_jwk() for k in keys]})


def test_our_credential_round_trips_and_is_deterministic() -> None:
    credential = our_credential()
    secured = di.add_proof(credential, KEY, created=ISSUED)
    (proof,) = secured["proof"]
    assert proof["verificationMethod"] == KEY.kid
    assert proof["created"] == "2026-07-03T09:30:12Z"
    assert {k: proof[k] for k in ("type", "cryptosuite", "proofPurpose")} == {
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-rdfc-2022",
        "proofPurpose": "assertionMethod",
    }
    assert di.add_proof(credential, KEY, created=ISSUED) == secured  # Ed25519: deterministic
    public = KEY.private_key.public_key()
    assert di.verify(secured, {KEY.kid: public}.get).credential == credential

    def tamper(edit: Any) -> str:
        forged = copy.deepcopy(secured)
        edit(forged)
        with pytest.raises(di.ProofError) as refused:
            di.verify(forged, {KEY.kid: public}.get)
        return refused.value.check

    assert tamper(lambda d: d["credentialSubject"]["identifier"][0].update(identityHash="X")) == (
        "signature"
    )
    assert tamper(lambda d: d["credentialStatus"].update(statusListIndex="1")) == "signature"
    assert tamper(lambda d: d["proof"][0].update(proofPurpose="authentication")) == "proof"
    assert tamper(lambda d: d["proof"][0].update(cryptosuite="eddsa-jcs-2022")) == "proof"
    assert tamper(lambda d: d["proof"][0].update(verificationMethod=f"{DID}#other")) == (
        "issuer-key"
    )
    assert tamper(lambda d: d.update({"@context": [*d["@context"], "https://evil.example/"]})) == (
        "context"
    )
    # A property the contexts do not define would be dropped (not signed): refused, as
    # jsonld.js' safe mode does, instead of verifying without it.
    assert tamper(lambda d: d.update(extra="x")) == "context"
    assert tamper(lambda d: d["credentialSubject"].update({"@unknown": "x"})) == "context"
    assert tamper(lambda d: d["issuer"].update(siret="x")) == "context"


def test_status_list_credential_round_trips() -> None:
    credential = vc.build_status_list_credential(
        list_url="http://127.0.0.1:8102/v1/status-lists/1",
        issuer=vc.ServiceIssuer(id=DID, name="certibloc"),
        encoded_list=vc.encode_status_list([3]),
        valid_from=ISSUED,
    )
    secured = di.add_proof(credential, KEY, created=ISSUED)
    assert secured["@context"] == ["https://www.w3.org/ns/credentials/v2"]
    di.verify(secured, {KEY.kid: KEY.private_key.public_key()}.get)


def test_the_form_served_is_derived_from_the_signed_token() -> None:
    credential = our_credential()
    token = sign_credential(credential, KEY)
    secured = json.loads(from_token(token, {KEY.kid: KEY}.__getitem__))
    assert unsecured(secured) == credential  # no iss nor jti
    assert secured["proof"][0]["created"] == credential["validFrom"]
    assert from_token(token, {KEY.kid: KEY}.__getitem__) == from_token(
        token, {KEY.kid: KEY}.__getitem__
    )
    report = check_data_integrity(
        json.dumps(secured).encode(), did_doc(KEY), lambda _: ("valid", "non révoquée")
    )
    assert report.valid, report.checks
    assert [c.name for c in report.checks] == [
        "format",
        "issuer-key",
        "context",
        "signature",
        "claims",
        "schema",
        "dates",
        "status",
    ]
    assert report.as_json()["holder"]["family_name"] == "Durand"


def _report(body: bytes | dict[str, Any], *keys: SigningKey) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return check_data_integrity(data, did_doc(*(keys or (KEY,))), None).as_json()


def test_reports_what_fails() -> None:
    secured = di.add_proof(our_credential(), KEY, created=ISSUED)
    other = SigningKey.generate(f"{DID}#k2")
    by_other = di.add_proof(our_credential(), other, created=ISSUED)
    not_ours = _report(by_other)
    assert not_ours["valid"] is False
    assert not_ours["checks"][-1]["name"] == "issuer-key" and not not_ours["checks"][-1]["ok"]

    # Signed by a key of the DID document, but that DID is not the credential's issuer.
    stranger = SigningKey.generate("did:web:elsewhere.example#k")
    foreign = di.add_proof(our_credential(), stranger, created=ISSUED)
    document = did_doc(KEY)
    document["verificationMethod"].append(
        {
            "id": stranger.kid,
            "type": "JsonWebKey",
            "controller": "did:web:elsewhere.example",
            "publicKeyJwk": stranger.public_jwk(),
        }
    )
    document["assertionMethod"].append(stranger.kid)
    report = check_data_integrity(json.dumps(foreign).encode(), document, None).as_json()
    claims = next(c for c in report["checks"] if c["name"] == "claims")
    assert report["valid"] is False and claims["ok"] is False

    future = di.add_proof(
        build(CERTIFICATION, facts=FACTS, valid_from=datetime(2999, 1, 1, tzinfo=UTC)),
        KEY,
        created=ISSUED,
    )
    dates = next(c for c in _report(future)["checks"] if c["name"] == "dates")
    assert dates["ok"] is False

    expired = dict(secured, validUntil="2020-01-01T00:00:00Z")
    assert _report(expired)["valid"] is False  # the signature no longer verifies either


HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "not JSON": b"{nope",
    "not UTF-8": b'{"a": "\xff\xfe"}',
    "array": b"[1, 2]",
    "deep nesting": b'{"@context": ["https://www.w3.org/ns/credentials/v2"], "a": '
    + b"[" * 20_000
    + b"]" * 20_000
    + b"}",
    "deep objects (under json's limit)": b'{"@context": [], "a": '
    + b'{"a": ' * 200
    + b"1"
    + b"}" * 200
    + b"}",
    "huge integer": b'{"@context": [], "n": ' + b"9" * 5000 + b"}",
    "huge float": b'{"@context": [], "n": 1e999}',
    "NaN": b'{"@context": [], "n": NaN}',
    "no context": b'{"proof": {}}',
    "inline context": json.dumps({"@context": [{"@vocab": "https://evil.example/"}]}).encode(),
    "no proof": json.dumps({"@context": ["https://www.w3.org/ns/credentials/v2"]}).encode(),
    "proof not an object": json.dumps({"@context": [], "proof": "z123"}).encode(),
    "two proofs": json.dumps({"@context": [], "proof": [{}, {}]}).encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_json_is_a_failed_format_check(name: str) -> None:
    report = _report(HOSTILE[name])
    assert report["valid"] is False and report["holder"] is None
    assert report["checks"] == [
        {"name": "format", "ok": False, "detail": report["checks"][0]["detail"]}
    ]


def _prepend_identity(secured: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    forged = copy.deepcopy(secured)
    identifier = forged["credentialSubject"]["identifier"]
    identifier.insert(0, {**identifier[0], **entry})
    return forged


def test_hostile_json_ld_is_a_failed_check() -> None:
    secured = di.add_proof(our_credential(), KEY, created=ISSUED)
    cases = {
        "unknown context": dict(
            secured, **{"@context": [*secured["@context"], "https://x.example/c"]}
        ),
        "nested context": dict(secured, credentialSubject={"@context": {"a": "b"}}),
        "blank node id": dict(secured, credentialSubject={"id": "_:b0"}),
        # Not in the RDF (so not signed), yet first in the JSON a reader takes the name from:
        "relative id": _prepend_identity(secured, {"id": "x", "identityHash": "Mallory"}),
        "bad proofValue": dict(secured, proof=[dict(secured["proof"][0], proofValue="z0OIl")]),
        "short signature": dict(secured, proof=[dict(secured["proof"][0], proofValue="z1111")]),
        "bad created": dict(secured, proof=[dict(secured["proof"][0], created="yesterday")]),
        "odd types": dict(secured, type={"a": [1]}, issuer=7),
        "proof with a foreign context": dict(
            secured, proof=[dict(secured["proof"][0], **{"@context": "https://x.example/c"})]
        ),
    }
    for name, document in cases.items():
        report = _report(document)
        assert report["valid"] is False, name
        assert not all(c["ok"] for c in report["checks"]), name
    unknown = _report(cases["unknown context"])
    assert any("https://x.example/c" in c["detail"] for c in unknown["checks"])
