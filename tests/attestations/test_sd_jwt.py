"""The SD-JWT VC form of the attestations (RFC 9901, draft-ietf-oauth-sd-jwt-vc) and its Token
Status List (draft-ietf-oauth-status-list): encoding against the specifications' rules and test
vectors, what is disclosed and what is not, holder binding, hostile inputs refused by name, and
one revocation flipping both status lists. In this process (handlers fed in memory); over HTTP
with an independent verifier: test_sd_jwt_node.py."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import registry_v1 as v1
from services.attestations.application import AttestationsApp
from services.attestations.composition import build_attestations
from services.attestations.domain import sd_jwt
from services.attestations.domain import token_status_list as tsl
from services.attestations.domain.aggregates import STATUS_LIST_SIZE
from services.attestations.domain.credential import decode_status_list, is_set
from services.attestations.domain.jose import SigningKey, sign_typed, unverified_payload
from services.attestations.sd_jwt_vc import (
    PAD_DIGESTS_TO,
    NotIssuable,
    issue_sd_jwt_vc,
    type_metadata,
)
from services.attestations.sd_jwt_verification import check_sd_jwt_vc
from services.attestations.settings import AttestationsSettings
from services.attestations.token_status import TokenStatusLists
from tests.attestations.test_handlers import A, registered, validated
from tests.support.feed import Feeder

DID = "did:web:127.0.0.1%3A8102"
KEY = SigningKey.generate(f"{DID}#k1")
JWKS = {"keys": [KEY.public_jwk()]}
NOW = int(datetime(2026, 7, 4, tzinfo=UTC).timestamp())


def _b64json(value: Any) -> str:
    return sd_jwt.b64url(json.dumps(value).encode())


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any], list[list[Any]]]:
    parts = sd_jwt.split(token)
    header = json.loads(base64.urlsafe_b64decode(parts.jwt.split(".")[0] + "=="))
    disclosures = [json.loads(sd_jwt.b64url_decode(d)) for d in parts.disclosures]
    return header, unverified_payload(parts.jwt), disclosures


def _present(token: str, *names: str) -> str:
    """The presentation a holder makes of ``token`` disclosing only ``names``."""
    parts = sd_jwt.split(token)
    kept = [d for d in parts.disclosures if json.loads(sd_jwt.b64url_decode(d))[1] in names]
    return sd_jwt.Parts(parts.jwt, tuple(kept), None).without_kb


# --- SD-JWT (RFC 9901) ---------------------------------------------------------------------


def test_a_disclosure_and_its_digest_are_as_rfc_9901_computes_them() -> None:
    # RFC 9901 section 4.2.1's example: salt, name, value -> this Disclosure and digest.
    encoded = "WyJfMjZiYzRMVC1hYzZxMktJNmNCVzVlcyIsICJmYW1pbHlfbmFtZSIsICJNw7ZiaXVzIl0"
    assert json.loads(sd_jwt.b64url_decode(encoded)) == [
        "_26bc4LT-ac6q2KI6cBW5es",
        "family_name",
        "Möbius",
    ]
    assert sd_jwt.digest_of(encoded) == "X9yH0Ajrdm1Oij4tWso9UzzKJvPoDxwmuEcO3XAdRC0"
    mine = sd_jwt.disclose("family_name", "Möbius", salt="_26bc4LT-ac6q2KI6cBW5es")
    assert json.loads(sd_jwt.b64url_decode(mine.encoded)) == [
        "_26bc4LT-ac6q2KI6cBW5es",
        "family_name",
        "Möbius",
    ]
    assert mine.digest == sd_jwt.digest_of(mine.encoded)


def test_issued_then_processed_whole_or_in_part() -> None:
    token = sd_jwt.issue(
        {"iss": DID, "vct": "urn:x"},
        {"given_name": "Léa", "bloc": {"code": "BC01", "title": "T"}},
        KEY,
        typ="dc+sd-jwt",
        pad_digests_to=10,
    )
    assert token.endswith("~") and token.count("~") == 3
    header, payload, _ = _decode(token)
    assert header == {"alg": "EdDSA", "typ": "dc+sd-jwt", "kid": KEY.kid}
    assert payload["_sd_alg"] == "sha-256" and len(payload["_sd"]) == 10
    assert payload["_sd"] == sorted(payload["_sd"])
    _, verified = sd_jwt.verify_issuer_jwt(sd_jwt.split(token).jwt, JWKS, "dc+sd-jwt")
    whole = sd_jwt.process(verified, sd_jwt.split(token).disclosures)
    assert whole.claims == {
        "iss": DID,
        "vct": "urn:x",
        "given_name": "Léa",
        "bloc": {"code": "BC01", "title": "T"},
    }
    part = sd_jwt.process(verified, sd_jwt.split(_present(token, "bloc")).disclosures)
    assert "given_name" not in part.claims and part.disclosed == (("bloc",),)
    # PyJWT, another library, checks the issuer-signed JWT (its typ is not its business).
    pyjwt.decode(sd_jwt.split(token).jwt, key=pyjwt.PyJWK(KEY.public_jwk()), algorithms=["EdDSA"])


def _signed(payload: dict[str, Any], *disclosures: str) -> str:
    return "~".join([sign_typed(payload, KEY, "dc+sd-jwt"), *disclosures, ""])


def _refusal(token: str) -> str:
    parts = sd_jwt.split(token)
    _, payload = sd_jwt.verify_issuer_jwt(parts.jwt, JWKS, "dc+sd-jwt")
    with pytest.raises(sd_jwt.SdJwtError) as refused:
        sd_jwt.process(payload, parts.disclosures)
    assert refused.value.check == "disclosures"
    return refused.value.detail


def test_hostile_disclosures_are_refused_by_name() -> None:
    d = sd_jwt.disclose("given_name", "Léa")
    base = {"iss": DID, "_sd_alg": "sha-256"}
    tampered = _b64json([d.salt, "given_name", "Eve"])
    assert "aucun condensat" in _refusal(_signed({**base, "_sd": [d.digest]}, tampered))
    assert "deux fois" in _refusal(_signed({**base, "_sd": [d.digest]}, d.encoded, d.encoded))
    assert "deux fois" in _refusal(_signed({**base, "_sd": [d.digest, d.digest]}, d.encoded))
    assert "base64url" in _refusal(_signed({**base, "_sd": [d.digest]}, "@@@"))
    assert "base64url" in _refusal(_signed({**base, "_sd": [d.digest]}, d.encoded + "="))
    clash = sd_jwt.disclose("iss", "did:web:evil")
    assert "existe déjà" in _refusal(_signed({**base, "_sd": [clash.digest]}, clash.encoded))
    reserved = _b64json(["salt", "_sd", []])
    assert "réservé" in _refusal(_signed({**base, "_sd": [sd_jwt.digest_of(reserved)]}, reserved))
    shape = _b64json(["salt", "a", "b", "c"])
    assert "ni [sel" in _refusal(_signed({**base, "_sd": [sd_jwt.digest_of(shape)]}, shape))
    assert "seul sha-256" in _refusal(_signed({**base, "_sd_alg": "md5", "_sd": []}))
    assert "pas un tableau" in _refusal(_signed({**base, "_sd": "x"}))
    # An array element disclosure in an array, as RFC 9901 4.2.4 writes it, is processed.
    element = _b64json(["salt", "FR"])
    out = sd_jwt.process({"n": [{"...": sd_jwt.digest_of(element)}, "DE"]}, [element])
    assert out.claims == {"n": ["FR", "DE"]} and out.disclosed == (("n", 0),)
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    with pytest.raises(sd_jwt.SdJwtError, match="imbrication"):
        sd_jwt.process(deep, [])
    with pytest.raises(sd_jwt.SdJwtError, match="plus de 64"):
        sd_jwt.split("a.b.c" + "~x" * 65 + "~")
    with pytest.raises(sd_jwt.SdJwtError, match="vide"):
        sd_jwt.split("a.b.c~~x~")


def test_key_binding_proves_the_holder_key_over_this_very_presentation() -> None:
    holder = Ed25519PrivateKey.generate()
    jwk = SigningKey("h", holder).public_jwk()
    token = sd_jwt.issue(
        {"iss": DID, "cnf": {"jwk": sd_jwt.holder_public_jwk(jwk)}},
        {"given_name": "Léa", "bloc": "BC01"},
        KEY,
        typ="dc+sd-jwt",
    )
    shown = _present(token, "bloc")
    kb = sd_jwt.key_binding_jwt(shown, holder, aud="https://verifier.example", nonce="n1", iat=NOW)
    parts = sd_jwt.split(shown + kb)
    _, payload = sd_jwt.verify_issuer_jwt(parts.jwt, JWKS, "dc+sd-jwt")
    verified = sd_jwt.verify_key_binding(parts, payload["cnf"], now=NOW)
    assert verified["nonce"] == "n1" and verified["aud"] == "https://verifier.example"

    def refused(presentation: str, now: int = NOW) -> str:
        with pytest.raises(sd_jwt.SdJwtError) as error:
            sd_jwt.verify_key_binding(sd_jwt.split(presentation), payload["cnf"], now=now)
        assert error.value.check == "key-binding"
        return error.value.detail

    other = sd_jwt.key_binding_jwt(shown, Ed25519PrivateKey.generate(), aud="a", nonce="n", iat=NOW)
    assert "pas celle de cnf.jwk" in refused(shown + other)
    # The same KB-JWT with one more Disclosure: its sd_hash is another presentation's.
    assert "sd_hash" in refused(token + kb)
    assert "futur" in refused(shown + kb, now=NOW - 3600)
    assert "aucun KB-JWT" in refused(shown)
    with pytest.raises(ValueError, match="public key"):
        sd_jwt.holder_public_jwk({**jwk, "d": "secret"})
    with pytest.raises(ValueError, match="Ed25519 or an EC P-256"):
        sd_jwt.holder_public_jwk({"kty": "RSA", "n": "x", "e": "AQAB"})
    with pytest.raises(ValueError, match="valid public key"):
        sd_jwt.holder_public_jwk({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})


# --- Token Status List ---------------------------------------------------------------------


def test_token_status_list_encoding_is_the_drafts() -> None:
    # draft-ietf-oauth-status-list, "Compressed Byte Array": 16 statuses, bits 1 -> 0xB9 0xA3.
    statuses = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
    lst = tsl.encode_lst([i for i, s in enumerate(statuses) if s], 16)
    assert zlib.decompress(sd_jwt.b64url_decode(lst)) == bytes([0xB9, 0xA3])
    # The draft's own compressed bytes decode to the same statuses.
    theirs = sd_jwt.b64url(bytes.fromhex("78dadbb918000217015d"))
    assert [tsl.status_at(tsl.decode_lst(theirs), i) for i in range(16)] == statuses
    assert tsl.status_at(bytes([0xC9]), 1, bits=2) == 0b10  # the draft's 2-bit example
    with pytest.raises(IndexError):
        tsl.status_at(b"\x00", 8)
    with pytest.raises(ValueError, match="larger than"):
        tsl.decode_lst(sd_jwt.b64url(zlib.compress(bytes(tsl.MAX_BYTES + 1))))
    with pytest.raises(ValueError, match="ZLIB"):
        tsl.decode_lst(sd_jwt.b64url(b"not zlib"))


# --- the attestations' SD-JWT VC -----------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AttestationsApp]:
    attestations, _ = build_attestations(AttestationsSettings(var_dir=tmp_path))
    yield attestations
    attestations.close()


@pytest.fixture
def feed(app: AttestationsApp) -> Feeder:
    return Feeder(app, app.registry_handlers(), app.before_commit)


def _issued(app: AttestationsApp, feed: Feeder, number: str = "S0001") -> dict[str, Any]:
    feed.send(registered(A, number, "Durand"))
    feed.send(validated(A, number, "RNCP40705BC01", "RNCP40705BC02", award=True))
    return {a.code: a for a in app.attestations_of(A, number) or []}


def _jwks(app: AttestationsApp) -> dict[str, Any]:
    return {"keys": [app.signing_key().public_jwk()]}


def test_each_attestation_has_an_sd_jwt_vc_with_salted_disclosures(
    app: AttestationsApp, feed: Feeder
) -> None:
    held = _issued(app, feed)
    bloc = held["RNCP40705BC01"]
    token = issue_sd_jwt_vc(app, bloc)
    header, payload, disclosures = _decode(token)
    base = app.links.base_url
    assert header == {"alg": "EdDSA", "typ": "dc+sd-jwt", "kid": app.signing_key().kid}
    assert set(payload) == {
        "iss", "iat", "vct", "status", "certification", "certifier", "_sd", "_sd_alg",
    }  # fmt: skip
    assert payload["iss"] == app.issuers.did and header["kid"].startswith(f"{app.issuers.did}#")
    assert payload["vct"] == f"{base}/vct/RNCP40705/bloc"
    assert payload["status"] == {
        "status_list": {
            "idx": bloc.status_index,
            "uri": f"{base}/v1/token-status-lists/{bloc.status_list}",
        }
    }
    assert payload["certification"]["code"] == "RNCP40705"
    assert len(payload["_sd"]) == PAD_DIGESTS_TO
    named = {d[1]: d[2] for d in disclosures}
    assert named == {
        "given_name": "Léa",
        "family_name": "Durand",
        "bloc": {"code": "RNCP40705BC01", "title": bloc.title},
        "decision_date": "2026-07-03",
        "route": "exam",
        "session": "2026-06",
    }
    assert all(len(sd_jwt.b64url_decode(d[0])) == 16 for d in disclosures)  # 128-bit salts
    # Nothing that names the holder besides what they choose to show: no id, no page.
    text = json.dumps([payload, disclosures])
    assert bloc.public_id not in text and "/v/" not in text and "birth" not in text
    # Each download is a new issuance: new salts, so presentations of two do not link.
    again = _decode(issue_sd_jwt_vc(app, bloc))[2]
    assert {d[0] for d in again}.isdisjoint({d[0] for d in disclosures})

    diploma = held["RNCP40705"]
    _, dpayload, ddisclosures = _decode(issue_sd_jwt_vc(app, diploma))
    assert dpayload["vct"] == f"{base}/vct/RNCP40705/certification"
    assert {d[1]: d[2] for d in ddisclosures}["mention"] == "Assez bien"
    assert "bloc" not in {d[1] for d in ddisclosures}
    assert len(dpayload["_sd"]) == PAD_DIGESTS_TO


def test_the_type_metadata_says_what_is_disclosable_as_issued(
    app: AttestationsApp, feed: Feeder
) -> None:
    held = _issued(app, feed)
    base = app.links.base_url
    for kind, code in (("bloc", "RNCP40705BC01"), ("certification", "RNCP40705")):
        document = type_metadata(base, "RNCP40705", kind)
        assert document is not None and document["vct"] == f"{base}/vct/RNCP40705/{kind}"
        assert {d["locale"] for d in document["display"]} == {"fr", "en"}
        assert all(
            {d["locale"] for d in claim["display"]} == {"fr", "en"} for claim in document["claims"]
        )
        _, payload, disclosures = _decode(issue_sd_jwt_vc(app, held[code]))
        disclosed = {d[1] for d in disclosures}
        top = {c["path"][0]: c for c in document["claims"] if len(c["path"]) == 1}
        for name, claim in top.items():
            assert claim["sd"] in ("always", "never")
            if claim["sd"] == "always":
                assert name not in payload, name
            else:
                assert name not in disclosed, name
            if claim.get("mandatory"):
                assert name in payload or name in disclosed, name
        assert disclosed <= set(top) and set(payload) - {"_sd", "_sd_alg"} <= {
            *top, "iss", "iat", "vct", "status",
        }  # fmt: skip
    assert type_metadata(base, "RNCP00000", "bloc") is None
    assert type_metadata(base, "RNCP40705", "other") is None


def test_holder_binding_through_cnf(app: AttestationsApp, feed: Feeder) -> None:
    bloc = _issued(app, feed)["RNCP40705BC01"]
    holder = Ed25519PrivateKey.generate()
    jwk = SigningKey("h", holder).public_jwk()
    token = issue_sd_jwt_vc(app, bloc, holder_jwk=jwk)
    _, payload, _ = _decode(token)
    assert payload["cnf"] == {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]}}
    shown = _present(token, "bloc")
    kb = sd_jwt.key_binding_jwt(shown, holder, aud="https://v.example", nonce="abc", iat=NOW)
    report = check_sd_jwt_vc(shown + kb, _jwks(app), None, base_url=app.links.base_url, now=NOW)
    assert report["valid"] is True, report
    assert report["disclosed"] == ["bloc"] and "given_name" not in report["claims"]
    assert report["key_binding"] == {"aud": "https://v.example", "nonce": "abc", "iat": NOW}
    with pytest.raises(ValueError, match="public key"):
        issue_sd_jwt_vc(app, bloc, holder_jwk={**jwk, "d": "x"})


def test_revoking_flips_the_token_status_list_and_the_bitstring_at_once(
    app: AttestationsApp, feed: Feeder
) -> None:
    held = _issued(app, feed, "R0001")
    bloc = held["RNCP40705BC01"]
    lists = TokenStatusLists(app)
    number, index = bloc.status_list, bloc.status_index
    token = issue_sd_jwt_vc(app, bloc)
    jwks = _jwks(app)

    def token_status() -> int:
        status_token = lists.token(number)
        assert status_token is not None
        header = pyjwt.get_unverified_header(status_token)
        assert header["typ"] == "statuslist+jwt" and header["kid"] == app.signing_key().kid
        claims = pyjwt.decode(status_token, key=pyjwt.PyJWK(jwks["keys"][0]), algorithms=["EdDSA"])
        assert claims["sub"] == lists.url(number) and claims["iss"] == app.issuers.did
        assert claims["ttl"] > 0 and claims["exp"] > claims["iat"]
        statuses = tsl.decode_lst(claims["status_list"]["lst"])
        assert claims["status_list"]["bits"] == 1 and len(statuses) * 8 == STATUS_LIST_SIZE
        return tsl.status_at(statuses, index)

    def bitstring() -> bool:
        vc_token = app.status_list_credential(number)
        assert vc_token is not None
        encoded = unverified_payload(vc_token)["credentialSubject"]["encodedList"]
        return is_set(decode_status_list(encoded), index)

    assert token_status() == 0 and bitstring() is False
    cached = lists.token(number)
    assert lists.token(number) == cached  # not re-signed while the list is the same
    before = check_sd_jwt_vc(
        token, jwks, lambda u, i: _lookup(lists, u, i), base_url=app.links.base_url, now=NOW
    )
    assert before["valid"] is True and before["status"] == "valid", before

    feed.send(
        v1.DecisionRecorded(
            decision_id="k1",
            decision="correction",
            candidate_number="R0001",
            exam_center=A,
            certification="RNCP40705",
            access_route="formation_continue",
            route="exam",
            decided_on=date(2026, 7, 3),
            session="2026-06",
            corrects="d1",
            reason="Erreur de report de note",
            withdrawn=[
                v1.WithdrawnBloc(validation_id=f"v-{A}-R0001-RNCP40705BC01", bloc="RNCP40705BC01")
            ],
            award_withdrawn="a-R0001",
        )
    )
    assert token_status() == 1 and bitstring() is True
    assert lists.token(number) != cached
    after = check_sd_jwt_vc(
        token, jwks, lambda u, i: _lookup(lists, u, i), base_url=app.links.base_url, now=NOW
    )
    assert after["valid"] is False and after["status"] == "revoked", after
    assert lists.status(number, held["RNCP40705BC02"].status_index) == 0
    revoked = app.attestation(bloc.public_id)
    assert revoked is not None
    with pytest.raises(NotIssuable):
        issue_sd_jwt_vc(app, revoked)
    assert lists.token(number + 1) is None and lists.status(number, STATUS_LIST_SIZE) is None


def _lookup(lists: TokenStatusLists, uri: str, idx: int) -> tuple[str, str]:
    number = lists.number_of(uri)
    status = lists.status(number, idx) if number else None
    return (
        ("unknown", "?")
        if status is None
        else (("valid", "revocation bit clear"), ("revoked", "bit set"))[status]
    )


def test_the_verify_report_on_tampered_and_hostile_sd_jwts(
    app: AttestationsApp, feed: Feeder
) -> None:
    bloc = _issued(app, feed)["RNCP40705BC01"]
    token = issue_sd_jwt_vc(app, bloc)
    jwks, base = _jwks(app), app.links.base_url

    def failed(candidate: str) -> dict[str, str]:
        report = check_sd_jwt_vc(candidate, jwks, None, base_url=base, now=NOW)
        assert report["valid"] is False, report
        return {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}

    whole = check_sd_jwt_vc(token, jwks, None, base_url=base, now=NOW)
    assert whole["valid"] is True and whole["status"] == "unchecked"
    assert whole["claims"]["given_name"] == "Léa" and len(whole["disclosed"]) == 6
    parts = sd_jwt.split(token)
    head, body, sig = parts.jwt.split(".")
    payload = json.loads(sd_jwt.b64url_decode(body))
    forged = _b64json({**payload, "vct": f"{base}/vct/RNCP40705/certification"})
    assert "signature" in failed("~".join([f"{head}.{forged}.{sig}", *parts.disclosures, ""]))
    first = json.loads(sd_jwt.b64url_decode(parts.disclosures[0]))
    changed = _b64json([first[0], first[1], "Eve"])
    assert "disclosures" in failed("~".join([parts.jwt, changed, *parts.disclosures[1:], ""]))
    assert "format" in failed("not an sd-jwt")
    assert "format" in failed("a.b.c~")
    assert "format" in failed(token.replace("~", "~~", 1))
    assert "format" in failed(parts.jwt + "~" * 70)
    assert "key-binding" in failed(token + "a.b.c")  # a KB-JWT for a token without cnf
    other = SigningKey.generate(bloc.kid)
    alien = sign_typed(payload, other, "dc+sd-jwt")
    assert "signature" in failed("~".join([alien, *parts.disclosures, ""]))
    vc_typed = sign_typed(payload, app.signing_key(), "vc+jwt")
    assert "format" in failed(vc_typed + "~")
