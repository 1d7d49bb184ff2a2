"""The attestation credential: its shape against the published schemas, its JWS, its status list."""

from __future__ import annotations

import base64
import gzip
import json
import re
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from jsonschema.validators import validator_for
from referencing import Registry, Resource

from services.attestations.domain import credential as vc
from services.attestations.domain.jose import (
    MEDIA_TYPE,
    SigningKey,
    VerificationError,
    sign,
    unverified_header,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]
# The published schemas, vendored where the service reads them; the official vectors under
# tests/data (tests/data/standards/SOURCES.md says where each comes from).
STANDARDS = ROOT / "services" / "attestations" / "schemas"
VECTORS = ROOT / "tests" / "data" / "standards" / "vectors"
VC2_SCHEMA = "vc2_verifiable-credential-schema.json"
OB3_SCHEMA = "ob_v3p0_achievementcredential_schema.json"

ISSUER = vc.IssuerProfile(
    id="did:web:127.0.0.1%3A8102",
    name="Ministère de l'Éducation nationale et de la Jeunesse",
    siret="11004301500012",
    url="http://127.0.0.1:8102",
)
CERTIFICATION_TITLE = "BAC PRO - Assistance à la gestion des organisations et de leurs activités"
BLOC = vc.AchievementInfo(
    code="RNCP40705BC01",
    title="Gérer des relations avec les clients, les usagers et les adhérents",
    kind="bloc",
    competences=(
        "Identifier les caractéristiques de la demande",
        "Apporter une réponse adaptée à la demande",
        "Produire, dans un environnement numérique, des supports de communication adaptés",
        "Assurer le suivi administratif des opérations de promotion et de prospection",
        "Appliquer les procédures internes de traitement des relations « clients »",
        "Assurer le suivi des relances clients",
    ),
    certification_code="RNCP40705",
    certification_title=CERTIFICATION_TITLE,
    level=4,
)
CERTIFICATION = vc.AchievementInfo(
    code="RNCP40705",
    title=CERTIFICATION_TITLE,
    kind="certification",
    competences=(
        "Gérer des relations avec les clients, les usagers et les adhérents",
        "Organiser et suivre l'activité de production (de biens ou de services)",
        "Administrer le personnel",
    ),
    certification_code="RNCP40705",
    certification_title=CERTIFICATION_TITLE,
    level=4,
)
LEA = vc.Holder(given_names=("Léa", "Marie"), family_name="Durand", birth_name=None)
LIST_URL = "http://127.0.0.1:8102/v1/status-lists/1"
ISSUED = datetime(2026, 7, 3, 9, 30, 12, 345678, tzinfo=UTC)


def build(
    achievement: vc.AchievementInfo = BLOC, holder: vc.Holder = LEA, **overrides: Any
) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "attestation_id": "k3N5yQ0bV1pWmJx2aT7cRg",
        "verify_url": "http://127.0.0.1:8102/v/k3N5yQ0bV1pWmJx2aT7cRg",
        "issuer": ISSUER,
        "holder": holder,
        "achievement": achievement,
        "valid_from": ISSUED,
        "status": vc.StatusEntry(list_url=LIST_URL, index=4242),
    }
    arguments.update(overrides)
    return vc.build_credential(**arguments)


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schemas() -> Registry[Any]:
    """Both published schemas, resolvable by their $id, from local files only (no retrieval)."""
    resources = [
        (schema["$id"], Resource.from_contents(schema))
        for schema in (load(STANDARDS / VC2_SCHEMA), load(STANDARDS / OB3_SCHEMA))
    ]
    return Registry().with_resources(resources)


def schema_errors(registry: Registry[Any], name: str, instance: dict[str, Any]) -> list[str]:
    schema = load(STANDARDS / name)
    cls = validator_for(schema)
    validator = cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- the credential ------------------------------------------------------------------------------


@pytest.mark.parametrize("achievement", [BLOC, CERTIFICATION], ids=["bloc", "certification"])
@pytest.mark.parametrize("schema", [VC2_SCHEMA, OB3_SCHEMA])
def test_credential_validates_against_published_schemas(
    schemas: Registry[Any], schema: str, achievement: vc.AchievementInfo
) -> None:
    credential = build(achievement)
    assert schema_errors(schemas, schema, credential) == []


def test_schemas_reject_what_they_should(schemas: Registry[Any]) -> None:
    """The validation above is not vacuous: each schema rejects a broken credential."""
    credential = build()
    broken = {**credential, "type": ["VerifiableCredential"]}
    assert schema_errors(schemas, OB3_SCHEMA, broken)
    no_context = {**credential, "@context": ["https://example.org/other"]}
    assert schema_errors(schemas, VC2_SCHEMA, no_context)


def test_bloc_credential_shape() -> None:
    credential = build()
    assert credential["@context"] == [
        "https://www.w3.org/ns/credentials/v2",
        "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
    ]
    assert credential["id"] == "http://127.0.0.1:8102/v/k3N5yQ0bV1pWmJx2aT7cRg"
    assert credential["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert credential["validFrom"] == "2026-07-03T09:30:12Z"
    assert credential["name"] == (
        "Attestation de bloc de compétences — "
        "Gérer des relations avec les clients, les usagers et les adhérents"
    )
    issuer = credential["issuer"]
    assert issuer["id"] == ISSUER.id and issuer["type"] == ["Profile"]
    assert issuer["name"] == ISSUER.name and issuer["url"] == ISSUER.url
    assert issuer["otherIdentifier"] == [
        {"type": "IdentifierEntry", "identifier": "11004301500012", "identifierType": "ext:SIRET"}
    ]

    achievement = credential["credentialSubject"]["achievement"]
    assert achievement["id"] == (
        "https://www.francecompetences.fr/recherche/rncp/40705/#RNCP40705BC01"
    )
    assert achievement["achievementType"] == "Competency"
    assert achievement["humanCode"] == "RNCP40705BC01"
    assert achievement["inLanguage"] == "fr"
    assert CERTIFICATION_TITLE in achievement["description"]
    narrative = achievement["criteria"]["narrative"]
    for competence in BLOC.competences:
        assert f"\n- {competence}\n" in narrative
    assert achievement["alignment"] == [
        {
            "type": ["Alignment"],
            "targetName": BLOC.title,
            "targetCode": "RNCP40705BC01",
            "targetFramework": "Répertoire national des certifications professionnelles (RNCP)",
            "targetType": "ext:RNCPBlocDeCompetences",
            "targetUrl": "https://www.francecompetences.fr/recherche/rncp/40705/#RNCP40705BC01",
        }
    ]
    assert credential["credentialStatus"] == {
        "id": f"{LIST_URL}#4242",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "4242",
        "statusListCredential": LIST_URL,
    }
    assert "proof" not in credential


def test_certification_credential_shape() -> None:
    credential = build(CERTIFICATION)
    assert credential["name"] == f"Attestation de certification — {CERTIFICATION_TITLE}"
    achievement = credential["credentialSubject"]["achievement"]
    assert achievement["id"] == "https://www.francecompetences.fr/recherche/rncp/40705/"
    assert achievement["achievementType"] == "Diploma"
    assert achievement["humanCode"] == "RNCP40705"
    assert achievement["alignment"][0]["targetType"] == "ceterms:Credential"


def test_holder_is_named_and_nothing_more() -> None:
    credential = build()
    subject = credential["credentialSubject"]
    assert subject["type"] == ["AchievementSubject"]
    assert subject["identifier"] == [
        {
            "type": "IdentityObject",
            "identityType": "name",
            "hashed": False,
            "identityHash": "Léa Marie Durand",
        },
        {
            "type": "IdentityObject",
            "identityType": "ext:familyName",
            "hashed": False,
            "identityHash": "Durand",
        },
        {
            "type": "IdentityObject",
            "identityType": "ext:givenNames",
            "hashed": False,
            "identityHash": "Léa, Marie",
        },
    ]
    text = json.dumps(credential, ensure_ascii=False).lower()
    for leak in ("dateofbirth", "birthdate", "birth_date", "grade", "result"):
        assert leak not in text


def test_birth_name_when_it_differs() -> None:
    holder = vc.Holder(given_names=("Léa",), family_name="Durand", birth_name="Martin")
    identifiers = build(holder=holder)["credentialSubject"]["identifier"]
    assert identifiers[0]["identityHash"] == "Léa Durand"
    assert identifiers[-1] == {
        "type": "IdentityObject",
        "identityType": "ext:birthName",
        "hashed": False,
        "identityHash": "Martin",
    }
    same = vc.Holder(given_names=("Léa",), family_name="Durand", birth_name="Durand")
    assert len(build(holder=same)["credentialSubject"]["identifier"]) == 3


def test_dates_are_utc_with_z() -> None:
    paris = timezone(timedelta(hours=2))
    moment = datetime(2026, 7, 3, 11, 30, 12, tzinfo=paris)
    assert build(valid_from=moment)["validFrom"] == "2026-07-03T09:30:12Z"
    with pytest.raises(ValueError, match="timezone"):
        build(valid_from=datetime(2026, 7, 3, 11, 30))


def test_inconsistent_inputs_are_refused() -> None:
    wrong_bloc = vc.AchievementInfo(**{**BLOC.__dict__, "code": "RNCP99999BC01"})
    with pytest.raises(ValueError, match="bloc code"):
        build(wrong_bloc)
    wrong_cert = vc.AchievementInfo(**{**CERTIFICATION.__dict__, "code": "RNCP40705BC01"})
    with pytest.raises(ValueError, match="certification's code"):
        build(wrong_cert)
    with pytest.raises(ValueError, match="verification URL"):
        build(verify_url="http://127.0.0.1:8102/v/another")
    optional = vc.AchievementInfo(**{**BLOC.__dict__, "code": "RNCP40705UF-LV"})
    assert build(optional)["credentialSubject"]["achievement"]["id"].endswith("#RNCP40705UF-LV")


# --- JOSE ----------------------------------------------------------------------------------------


def test_sign_then_verify() -> None:
    key = SigningKey.generate("certibloc-2026-01")
    credential = build()
    token = sign(credential, key)
    assert MEDIA_TYPE == "application/vc+jwt"
    assert unverified_header(token) == {
        "alg": "EdDSA",
        "typ": "vc+jwt",
        "cty": "vc",
        "kid": "certibloc-2026-01",
    }
    # VC-JOSE-COSE: the payload is the credential itself, no "vc" claim.
    assert json.loads(b64url_decode(token.split(".")[1])) == credential
    assert verify(token, jwks(key)) == credential


def test_public_jwk() -> None:
    key = SigningKey.generate("k1")
    jwk = key.public_jwk()
    assert jwk.keys() == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["kid"], jwk["alg"], jwk["use"]) == (
        "OKP",
        "Ed25519",
        "k1",
        "EdDSA",
        "sig",
    )
    assert b64url_decode(jwk["x"]) == key.private_key.public_key().public_bytes_raw()


def test_token_is_what_joserfc_would_sign() -> None:
    """Ed25519 is deterministic: our fast path must give joserfc's bytes exactly."""
    from joserfc import jws
    from joserfc.errors import SecurityWarning

    key = SigningKey.generate("k1")
    credential = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        expected = jws.serialize_compact(
            key.protected_header, orjson.dumps(credential), key.jose_key, algorithms=["EdDSA"]
        )
    assert sign(credential, key) == expected


def test_an_independent_library_verifies_the_same_token() -> None:
    """PyJWT, not joserfc, checks the signature and reads the header."""
    key = SigningKey.generate("certibloc-2026-01")
    credential = build(CERTIFICATION)
    token = sign(credential, key)
    public = jwt.PyJWK(key.public_jwk())
    decoded = jwt.PyJWS().decode_complete(token, key=public, algorithms=["EdDSA"])
    assert decoded["header"]["typ"] == "vc+jwt"
    assert decoded["header"]["cty"] == "vc"
    assert decoded["header"]["kid"] == "certibloc-2026-01"
    assert json.loads(decoded["payload"]) == credential
    other = jwt.PyJWK(SigningKey.generate("certibloc-2026-01").public_jwk())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.PyJWS().decode_complete(token, key=other, algorithms=["EdDSA"])


def test_retired_keys_still_verify() -> None:
    old, new = SigningKey.generate("2025"), SigningKey.generate("2026")
    token = sign(build(), old)
    assert verify(token, jwks(new, old))["id"] == build()["id"]


def test_tampered_payload_fails_signature() -> None:
    key = SigningKey.generate("k1")
    header, _, signature = sign(build(), key).split(".")
    forged = build(holder=vc.Holder(given_names=("Marc",), family_name="Durand", birth_name=None))
    token = f"{header}.{b64url(orjson.dumps(forged))}.{signature}"
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(key))
    assert caught.value.check == "signature"


def test_wrong_key_under_the_same_kid_fails_signature() -> None:
    token = sign(build(), SigningKey.generate("k1"))
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(SigningKey.generate("k1")))
    assert caught.value.check == "signature"


def test_unknown_kid_fails_issuer_key() -> None:
    token = sign(build(), SigningKey.generate("k1"))
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(SigningKey.generate("k2")))
    assert caught.value.check == "issuer-key"
    with pytest.raises(VerificationError) as caught:
        verify(token, {"keys": []})
    assert caught.value.check == "issuer-key"


def test_algorithm_is_bound_to_the_key() -> None:
    """A token claiming HS256 with the public key as HMAC secret must not pass."""
    key = SigningKey.generate("k1")
    header = {"alg": "HS256", "typ": "vc+jwt", "cty": "vc", "kid": "k1"}
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(build()))}"
    mac = hmac.HMAC(key.public_jwk()["x"].encode(), hashes.SHA256())
    mac.update(signing_input.encode())
    token = f"{signing_input}.{b64url(mac.finalize())}"
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(key))
    assert caught.value.check == "signature"


@pytest.mark.parametrize(
    "token",
    ["", "not a token", "a.b", "a.b.c.d", "!!!.e30.AAAA", "WzFd.e30.AAAA"],
    ids=["empty", "text", "two-parts", "four-parts", "bad-base64", "header-not-object"],
)
def test_malformed_tokens_fail_format(token: str) -> None:
    with pytest.raises(VerificationError) as caught:
        verify(token, jwks(SigningKey.generate("k1")))
    assert caught.value.check == "format"


def test_wrong_typ_fails_format() -> None:
    key = SigningKey.generate("k1")
    header = {"alg": "EdDSA", "typ": "JWT", "kid": "k1"}
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(build()))}"
    signature = key.private_key.sign(signing_input.encode())
    with pytest.raises(VerificationError) as caught:
        verify(f"{signing_input}.{b64url(signature)}", jwks(key))
    assert caught.value.check == "format"


def test_official_vc_jose_minimal_vector_verifies() -> None:
    token = (VECTORS / "jose_credential-jose-minimal.txt").read_text(encoding="ascii").strip()
    assert unverified_header(token)["alg"] == "ES256"  # signed with the P-256 key
    key = load(VECTORS / "jose_vm-p256.json")["publicKeyJwk"]
    payload = verify(token, {"keys": [key]})
    assert payload["issuer"] == "https://example.issuer/vc-jose-cose"
    assert payload["type"] == ["VerifiableCredential", "ExampleAlumniCredential"]
    with pytest.raises(VerificationError) as caught:
        verify(token, {"keys": [load(VECTORS / "jose_vm-ed25519.json")["publicKeyJwk"]]})
    assert caught.value.check == "issuer-key"


def test_official_vc_jose_bad_signature_vector_fails() -> None:
    token = (VECTORS / "jose_credential-jose-bad-signature.txt").read_text("ascii").strip()
    key = load(VECTORS / "jose_vm-ed25519.json")["publicKeyJwk"]
    with pytest.raises(VerificationError) as caught:
        verify(token, {"keys": [key]})
    assert caught.value.check == "signature"


# --- the status list -----------------------------------------------------------------------------


def test_status_list_round_trip() -> None:
    revoked = {0, 7, 8, 42, 4242, 131_071}
    encoded = vc.encode_status_list(revoked)
    assert encoded.startswith("u")
    assert "=" not in encoded and re.fullmatch(r"u[A-Za-z0-9_-]+", encoded)
    bits = vc.decode_status_list(encoded)
    assert len(bits) == 16_384
    assert bits[0] == 0b1000_0001  # index 0 is the left-most (most significant) bit
    assert bits[1] == 0b1000_0000
    assert [i for i in range(131_072) if vc.is_set(bits, i)] == sorted(revoked)
    # Independent decoding: multibase 'u' + base64url (no padding) of GZIP data.
    assert gzip.decompress(b64url_decode(encoded[1:])) == bits
    assert vc.encode_status_list(revoked) == encoded  # deterministic
    assert vc.decode_status_list(vc.encode_status_list([])) == bytes(16_384)


def test_status_list_bounds() -> None:
    with pytest.raises(ValueError, match="at least"):
        vc.encode_status_list([], size=1024)
    with pytest.raises(ValueError, match="outside"):
        vc.encode_status_list([131_072])
    with pytest.raises(ValueError, match="outside"):
        vc.encode_status_list([-1])
    bits = vc.decode_status_list(vc.encode_status_list([], size=262_144))
    assert len(bits) == 32_768
    with pytest.raises(IndexError):
        vc.is_set(bits, 262_144)


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        (b64url(gzip.compress(bytes(16_384))), "prefix 'u'"),
        ("u!!!!", "not base64url"),
        ("u" + b64url(b"not gzip at all"), "not GZIP"),
        ("u" + b64url(gzip.compress(bytes(1024))), "shorter than 131072"),
        ("u" + b64url(gzip.compress(bytes(16_384))[:-12]), "truncated"),
    ],
    ids=["no-prefix", "bad-base64", "not-gzip", "too-short", "truncated"],
)
def test_status_list_decoding_refuses_malformed(encoded: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        vc.decode_status_list(encoded)


def test_status_list_credential(schemas: Registry[Any]) -> None:
    encoded = vc.encode_status_list([4242])
    service = vc.ServiceIssuer(id=ISSUER.id, name="certibloc")  # every certification's lists
    credential = vc.build_status_list_credential(
        list_url=LIST_URL, issuer=service, encoded_list=encoded, valid_from=ISSUED
    )
    assert credential == {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": LIST_URL,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": {"id": ISSUER.id, "name": "certibloc"},
        "validFrom": "2026-07-03T09:30:12Z",
        "credentialSubject": {
            "id": f"{LIST_URL}#list",
            "type": "BitstringStatusList",
            "statusPurpose": "revocation",
            "encodedList": encoded,
        },
    }
    assert schema_errors(schemas, VC2_SCHEMA, credential) == []
    # The entry of an attestation points at its bit in this list.
    entry = build()["credentialStatus"]
    assert entry["statusListCredential"] == credential["id"]
    bits = vc.decode_status_list(credential["credentialSubject"]["encodedList"])
    assert vc.is_set(bits, int(entry["statusListIndex"]))
    key = SigningKey.generate("k1")
    assert verify(sign(credential, key), jwks(key)) == credential
