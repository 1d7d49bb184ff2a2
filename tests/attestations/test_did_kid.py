"""Strict VC-JOSE-COSE: the kid is the DID URL of the verification method (the same in the DID
document and the JWK Set), ``iss`` is the issuer's id, ``jti`` the credential's; tokens signed
before (a bare thumbprint as kid, neither ``iss`` nor ``jti``) keep verifying."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from services.attestations.domain.jose import (
    SigningKey,
    VerificationError,
    did_of,
    sign,
    sign_credential,
    unverified_header,
    unverified_payload,
    verify,
)
from services.attestations.identity import did_document, did_web, did_web_document_url
from services.attestations.keys import DID_URL_KID, KeyStore, thumbprint
from services.attestations.verification import check_credential, schema_problems
from tests.attestations.test_credential import ISSUER, b64url, build, jwks

DID = ISSUER.id  # did:web:127.0.0.1%3A8102
LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
#: Signed by the code as it was before DID URL kids, with the key of the file beside it.
LEGACY_TOKEN = (LEGACY / "bare-kid.vc.jwt").read_text().strip()
LEGACY_KID = "YVYc-QxcBPUbeXjVjZMN0imjYXVVyLZQ0ujTqdfCbLM"


def did_key(name: str = "k1") -> SigningKey:
    return SigningKey.generate(f"{DID}#{name}")


def legacy_store(tmp_path: Path, *, did: str | None = DID) -> KeyStore:
    """A key directory as a deployment upgraded from bare kids has it: the old key, retired
    (no ``did_url_kid`` member), and a new active one."""
    directory = tmp_path / "keys"
    directory.mkdir()
    shutil.copy(LEGACY / f"{LEGACY_KID}.jwk", directory / f"{LEGACY_KID}.jwk")
    store = KeyStore(directory, did=did)
    store.rotate()
    return store


# --- did:web ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "did", "document"),
    [
        (
            "https://attestations.example.org",
            "did:web:attestations.example.org",
            "https://attestations.example.org/.well-known/did.json",
        ),
        (
            "https://localhost:8443",
            "did:web:localhost%3A8443",
            "https://localhost:8443/.well-known/did.json",
        ),
        (
            "https://example.org/certibloc/aca",
            "did:web:example.org:certibloc:aca",
            "https://example.org/certibloc/aca/did.json",
        ),
    ],
)
def test_did_web_of_the_base_url_and_where_it_resolves(
    base_url: str, did: str, document: str
) -> None:
    assert did_web(base_url) == did
    assert did_web_document_url(did) == document


# --- signing ------------------------------------------------------------------------------------


def test_the_header_names_the_verification_method_and_the_payload_iss_and_jti() -> None:
    key = did_key()
    credential = build()
    token = sign_credential(credential, key)
    assert unverified_header(token) == {
        "alg": "EdDSA",
        "typ": "vc+jwt",
        "cty": "vc",
        "kid": f"{DID}#k1",
    }
    payload = unverified_payload(token)
    assert payload == {**credential, "iss": DID, "jti": credential["id"]}
    assert payload["iss"] == payload["issuer"]["id"]
    assert schema_problems(payload) == []  # the JWT claims are allowed by both schemas
    assert verify(token, jwks(key)) == payload
    # What a JWT library checks first: iss and jti, with no knowledge of credentials.
    decoded = jwt.decode(
        token,
        key=jwt.PyJWK(key.public_jwk()),
        algorithms=["EdDSA"],
        issuer=DID,
        options={"require": ["iss", "jti"]},
    )
    assert decoded["jti"] == credential["id"]


def test_a_key_of_another_did_does_not_sign() -> None:
    with pytest.raises(ValueError, match="not a verification method"):
        sign_credential(build(), SigningKey.generate("did:web:other.example#k1"))


def test_keys_are_published_under_their_did_url(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, did=DID)
    key = store.ensure()
    name = store.active_name()
    public = key.private_key.public_key().public_bytes_raw()
    assert name == thumbprint(public)
    assert key.kid == store.active_kid() == f"{DID}#{name}"
    assert did_of(key.kid) == DID
    assert json.loads((tmp_path / f"{name}.jwk").read_text())[DID_URL_KID] is True
    # A key created since DID URL kids is published once, under its DID URL.
    assert [k["kid"] for k in store.public_jwks()["keys"]] == [key.kid]
    assert store.load(key.kid).kid == store.load(name).kid == key.kid
    # Without a DID (tools that only manage the files): the bare thumbprint, as before.
    assert KeyStore(tmp_path).active().kid == name


def test_the_did_document_method_id_is_the_kid_of_the_token_and_the_jwks(tmp_path: Path) -> None:
    store = legacy_store(tmp_path)
    published = store.public_jwks()
    document = did_document(DID, published)
    active = store.active()
    token = sign_credential(build(), active)
    methods = {m["id"]: m for m in document["verificationMethod"]}
    # One method per key (the bare-kid duplicate of the JWK Set is not a second method).
    assert set(methods) == {f"{DID}#{LEGACY_KID}", active.kid}
    assert unverified_header(token)["kid"] in methods
    assert document["assertionMethod"] == list(methods)
    for method in methods.values():
        assert method["controller"] == DID and method["type"] == "JsonWebKey"
        assert method["publicKeyJwk"]["kid"] == method["id"]
        assert "d" not in method["publicKeyJwk"]
    by_kid = {k["kid"]: k for k in published["keys"]}
    assert {k for k in by_kid if did_of(k) == DID} == set(methods)
    for method_id, method in methods.items():
        assert method["publicKeyJwk"]["x"] == by_kid[method_id]["x"]


# --- old tokens ---------------------------------------------------------------------------------


def test_the_legacy_fixture_is_what_the_old_code_signed() -> None:
    header = unverified_header(LEGACY_TOKEN)
    assert header == {"alg": "EdDSA", "typ": "vc+jwt", "cty": "vc", "kid": LEGACY_KID}
    payload = unverified_payload(LEGACY_TOKEN)
    assert "iss" not in payload and "jti" not in payload
    assert payload["issuer"]["id"] == DID


def test_an_old_token_verifies_with_the_new_jwks(tmp_path: Path) -> None:
    store = legacy_store(tmp_path)
    published = store.public_jwks()
    kids = [k["kid"] for k in published["keys"]]
    # DID URL kids first; the key that signed before is also published under its bare kid,
    # for verifiers that match a token's kid in the JWK Set.
    assert kids[:2] == sorted([f"{DID}#{LEGACY_KID}", store.active_kid()])
    assert kids[2:] == [LEGACY_KID]
    assert verify(LEGACY_TOKEN, published)["issuer"]["id"] == DID
    # Also without that entry: a bare kid finds <did>#<kid>.
    strict = {"keys": [k for k in published["keys"] if did_of(k["kid"])]}
    assert verify(LEGACY_TOKEN, strict) == unverified_payload(LEGACY_TOKEN)
    report = check_credential(LEGACY_TOKEN, strict, status_lookup=None)
    assert report.valid and report.status == "unchecked"
    assert {c.name: c.ok for c in report.checks} == {
        "format": True,
        "issuer-key": True,
        "signature": True,
        "claims": True,
        "schema": True,
    }
    # And PyJWT, matching the kid in the published set, finds it too.
    entry = next(k for k in published["keys"] if k["kid"] == LEGACY_KID)
    assert jwt.decode(LEGACY_TOKEN, key=jwt.PyJWK(entry), algorithms=["EdDSA"])


def test_a_new_token_verifies_with_a_jwks_saved_before(tmp_path: Path) -> None:
    store = legacy_store(tmp_path)
    old_key = store.load(LEGACY_KID)
    token = sign_credential(build(), old_key)  # the old key, still active after the upgrade
    assert unverified_header(token)["kid"] == f"{DID}#{LEGACY_KID}"
    saved = {"keys": [{**old_key.public_jwk(), "kid": LEGACY_KID}]}  # a jwks.json of then
    assert verify(token, saved)["jti"] == build()["id"]


def test_retired_keys_resolve_after_rotation(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, did=DID)
    first = store.ensure()
    old = sign_credential(build(), first)
    second = store.rotate()
    new = sign_credential(build(), second)
    published = store.public_jwks()
    assert {k["kid"] for k in published["keys"]} == {first.kid, second.kid}
    for token in (old, new):
        assert verify(token, published)["iss"] == DID
    methods = {m["id"] for m in did_document(DID, published)["verificationMethod"]}
    assert methods == {first.kid, second.kid}


# --- what the verifier refuses ------------------------------------------------------------------


def signed(payload: dict[str, Any], key: SigningKey) -> str:
    return sign(payload, key)  # no check at signing: what someone else's signer might do


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"iss": "did:web:other.example"}, "claim 'iss'"),
        ({"iss": ["did:web:127.0.0.1%3A8102"]}, "claim 'iss'"),
        ({"jti": "urn:uuid:00000000-0000-4000-8000-000000000000"}, "claim 'jti'"),
    ],
    ids=["iss-other-did", "iss-not-a-string", "jti-other-id"],
)
def test_claims_contradicting_the_credential_are_refused(
    change: dict[str, Any], message: str
) -> None:
    key = did_key()
    payload = {**build(), "iss": DID, "jti": build()["id"], **change}
    token = signed(payload, key)
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(key))
    assert caught.value.check == "claims" and message in caught.value.detail
    report = check_credential(token, jwks(key), status_lookup=None)
    assert not report.valid
    checks = {c.name: c for c in report.checks}
    assert checks["signature"].ok and not checks["claims"].ok
    assert message in checks["claims"].detail


def test_a_kid_of_another_did_is_refused() -> None:
    other = SigningKey.generate("did:web:other.example#k1")
    token = signed({**build(), "iss": DID}, other)
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(other))
    assert caught.value.check == "claims" and "not a verification method" in caught.value.detail


def test_a_bare_kid_does_not_match_another_fragment() -> None:
    key = did_key("k1")
    token = sign(build(), SigningKey(kid="k2", private_key=key.private_key))
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(key))
    assert caught.value.check == "issuer-key"


def test_a_tampered_token_is_refused() -> None:
    key = did_key()
    header, payload, signature = sign_credential(build(), key).split(".")
    forged = {**unverified_payload(f"{header}.{payload}.{signature}"), "name": "autre"}
    with pytest.raises(VerificationError) as caught:
        verify(f"{header}.{b64url(orjson.dumps(forged))}.{signature}", jwks(key))
    assert caught.value.check == "signature"
