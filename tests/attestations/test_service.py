"""The attestations service end to end: a PV posted to the registry becomes signed, verifiable,
revocable attestations, over real HTTP and NATS."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import httpx
import jwt
import pytest

from services.attestations.pdf import CacheCipher
from services.attestations.verification import schema_problems
from services.runtime import tokens
from services.runtime.secrets import load_store_key
from tests.attestations.harness import Attestations
from tests.registry.harness import CENTER_A, CENTER_B, JURY, Registry, candidate, full_lines, pv


async def until(check: Any, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def attestations_of(
    http: httpx.AsyncClient, att: Attestations, registry: Registry, number: str, count: int
) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        r = await http.get(
            f"{att.url}/v1/attestations",
            params={"candidate_number": number},
            headers=registry.auth(),
        )
        if r.status_code != 200:
            return None
        items: list[dict[str, Any]] = r.json()["attestations"]
        return items if len(items) >= count else None

    found: list[dict[str, Any]] = await until(listed)
    return found


def independent_verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify with PyJWT, not the library that signed (joserfc)."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "vc+jwt" and header["cty"] == "vc" and header["alg"] == "EdDSA"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    payload: dict[str, Any] = jwt.decode(
        token, key=jwt.PyJWK(key), algorithms=["EdDSA"], options={"verify_aud": False}
    )
    return payload


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def test_pv_to_valid_revocable_attestations(
    services: tuple[Registry, Attestations], http: httpx.AsyncClient
) -> None:
    registry, att = services
    auth = registry.auth()
    await http.post(
        f"{registry.url}/v1/candidates",
        json=candidate("F1", given_names=["Léa", "Marie"], usage_name="Martin"),
        headers=auth,
    )
    await http.post(
        f"{registry.url}/v1/candidates",
        json=candidate("A1", access_route="apprentissage"),
        headers=auth,
    )
    lines = full_lines("F1", "12") + full_lines("A1", "13")
    created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
    assert created.status_code == 201

    # Continuing education: 12 bloc attestations + the certification's.
    mine = await attestations_of(http, att, registry, "F1", 13)
    assert sorted(a["kind"] for a in mine).count("bloc") == 12
    # Apprenticeship: the policy gives no bloc attestation, only the certification's.
    theirs = await attestations_of(http, att, registry, "A1", 1)
    assert [a["kind"] for a in theirs] == ["certification"]
    assert all(len(a["id"]) >= 22 for a in mine)  # >= 128 random bits, base64url

    bc01 = next(a for a in mine if a["code"] == "RNCP40705BC01")
    page = await http.get(bc01["verify_url"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Attestation valide" in page.text and "Léa Marie Martin" in page.text
    assert "Identifier les caractéristiques de la demande" in page.text
    assert "1994" not in page.text  # no birth date
    as_json = (await http.get(bc01["verify_url"], headers={"Accept": "application/json"})).json()
    assert as_json["status"] == "valid"
    assert as_json["holder"] == {"given_names": ["Léa", "Marie"], "family_name": "Martin"}
    assert as_json["achievement"]["code"] == "RNCP40705BC01"
    assert len(as_json["achievement"]["competences"]) == 12
    assert "birth_date" not in json.dumps(as_json) and "grade" not in json.dumps(as_json)

    # The credential: center key or the candidate's token; verifies with another JOSE library.
    cred_url = f"{att.url}/v1/attestations/{bc01['id']}/credential"
    assert (await http.get(cred_url)).status_code == 401
    assert (await http.get(cred_url, headers=registry.auth(CENTER_B))).status_code in (401, 404)
    holder = tokens.holder_subject(CENTER_A, "F1")
    token = tokens.mint(att.download_secret, holder, bc01["id"], 0, ttl_seconds=600)
    other = tokens.mint(
        att.download_secret, tokens.holder_subject(CENTER_A, "A1"), bc01["id"], 0, 600
    )
    assert (await http.get(cred_url, params={"token": other})).status_code == 403
    bc02 = next(a for a in mine if a["code"] == "RNCP40705BC02")
    not_this_one = tokens.mint(att.download_secret, holder, bc02["id"], 0, ttl_seconds=600)
    assert (await http.get(cred_url, params={"token": not_this_one})).status_code == 403
    by_token = await http.get(cred_url, params={"token": token})
    assert by_token.status_code == 200
    assert by_token.headers["content-type"] == "application/vc+jwt"
    jws = by_token.text
    assert (await http.get(cred_url, headers=auth)).text == jws
    jwks = (await http.get(f"{att.url}/.well-known/jwks.json")).json()
    assert all("d" not in k for k in jwks["keys"])  # never the private part
    credential = independent_verify(jws, jwks)
    assert schema_problems(credential) == []
    assert credential["credentialSubject"]["achievement"]["humanCode"] == "RNCP40705BC01"
    assert credential["credentialStatus"]["type"] == "BitstringStatusListEntry"
    did = (await http.get(f"{att.url}/.well-known/did.json")).json()
    assert did["id"] == credential["issuer"]["id"]
    # Strict VC-JOSE-COSE: the kid is the DID URL of a verification method of the issuer's DID
    # document, published under the same kid in the JWK Set; iss and jti for JWT verifiers.
    kid = jwt.get_unverified_header(jws)["kid"]
    assert kid.startswith(f"{did['id']}#")
    method = next(m for m in did["verificationMethod"] if m["id"] == kid)
    assert kid in did["assertionMethod"]
    assert method["publicKeyJwk"]["x"] == next(k for k in jwks["keys"] if k["kid"] == kid)["x"]
    assert credential["iss"] == credential["issuer"]["id"] and credential["jti"] == credential["id"]

    verified = (
        await http.post(
            f"{att.url}/v1/verify", content=jws, headers={"content-type": "application/vc+jwt"}
        )
    ).json()
    assert verified["valid"] is True and verified["status"] == "valid"
    assert [c["name"] for c in verified["checks"]] == [
        "format",
        "issuer-key",
        "signature",
        "claims",
        "schema",
        "status",
    ]
    head, _body, sig = jws.split(".")
    forged_body = (
        base64.urlsafe_b64encode(json.dumps({**credential, "name": "Faux"}).encode())
        .rstrip(b"=")
        .decode()
    )
    forged = (
        await http.post(
            f"{att.url}/v1/verify",
            content=f"{head}.{forged_body}.{sig}",
            headers={"content-type": "application/vc+jwt"},
        )
    ).json()
    assert forged["valid"] is False
    assert {c["name"]: c["ok"] for c in forged["checks"]}["signature"] is False

    # A correction takes BC01 away: its attestation and the diploma's are revoked.
    correction = await http.post(
        f"{registry.url}/v1/corrections",
        headers=auth,
        json={
            "deliberation_id": created.json()["deliberation_id"],
            "candidate_number": "F1",
            "bloc": "RNCP40705BC01",
            "grade": "3",
            "reason": "Erreur de report de note",
        },
    )
    assert correction.status_code == 201

    async def revoked() -> dict[str, Any] | None:
        r = await http.get(bc01["verify_url"], headers={"Accept": "application/json"})
        body: dict[str, Any] = r.json()
        return body if body["status"] == "revoked" else None

    after = await until(revoked)
    assert after["revocation_reason"] == "Erreur de report de note"
    page = await http.get(bc01["verify_url"])
    assert "Attestation révoquée" in page.text
    diploma = next(a for a in mine if a["kind"] == "certification")
    assert (await http.get(diploma["verify_url"], headers={"Accept": "application/json"})).json()[
        "status"
    ] == "revoked"
    recheck = (
        await http.post(
            f"{att.url}/v1/verify", content=jws, headers={"content-type": "application/vc+jwt"}
        )
    ).json()
    assert recheck["valid"] is False and recheck["status"] == "revoked"

    # The status list credential has the bit set for BC01 and only the revoked ones.
    status_url = credential["credentialStatus"]["statusListCredential"]
    status_jws = (await http.get(status_url)).text
    status_vc = independent_verify(status_jws, jwks)
    assert jwt.get_unverified_header(status_jws)["kid"] == kid
    assert (status_vc["iss"], status_vc["jti"]) == (did["id"], status_url)
    encoded = status_vc["credentialSubject"]["encodedList"]
    bits = gzip.decompress(base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded[1:]) % 4)))
    assert len(bits) * 8 >= 131072
    index = int(credential["credentialStatus"]["statusListIndex"])
    assert bits[index // 8] & (0x80 >> (index % 8))
    assert sum(bin(b).count("1") for b in bits) == 2  # BC01 and the diploma


async def test_unknown_attestation_and_bad_requests(
    services: tuple[Registry, Attestations], http: httpx.AsyncClient
) -> None:
    _, att = services
    page = await http.get(f"{att.url}/v/AAAAAAAAAAAAAAAAAAAAAA")
    assert page.status_code == 404 and "Attestation inconnue" in page.text
    as_json = await http.get(
        f"{att.url}/v/AAAAAAAAAAAAAAAAAAAAAA", headers={"Accept": "application/json"}
    )
    assert as_json.status_code == 404
    assert as_json.headers["content-type"] == "application/problem+json"
    garbage = await http.post(
        f"{att.url}/v1/verify", content=b"not a jws", headers={"content-type": "application/vc+jwt"}
    )
    assert garbage.status_code == 200 and garbage.json()["valid"] is False
    # JSON is a credential with a Data Integrity proof (test_verify_hostile_di): "{}" has none.
    no_proof = await http.post(
        f"{att.url}/v1/verify", content=b"{}", headers={"content-type": "application/json"}
    )
    assert no_proof.status_code == 200 and no_proof.json()["valid"] is False
    wrong_type = await http.post(
        f"{att.url}/v1/verify", content=b"<a/>", headers={"content-type": "application/xml"}
    )
    assert wrong_type.status_code == 415
    assert (await http.get(f"{att.url}/v1/status-lists/99")).status_code == 404
    listing = await http.get(f"{att.url}/v1/attestations", params={"candidate_number": "X"})
    assert listing.status_code == 401


async def test_vae_partial_decision_attests_exactly_the_named_blocs(
    services: tuple[Registry, Attestations], http: httpx.AsyncClient
) -> None:
    registry, att = services
    auth = registry.auth()
    await http.post(
        f"{registry.url}/v1/candidates", json=candidate("V1", access_route="vae"), headers=auth
    )
    named = ["RNCP40705BC02", "RNCP40705BC03"]
    r = await http.post(
        f"{registry.url}/v1/vae-decisions",
        headers=auth,
        json={
            "candidate_number": "V1",
            "certification": "RNCP40705",
            "decided_on": "2026-05-20",
            "jury": JURY,
            "decision": "partielle",
            "blocs": named,
        },
    )
    assert r.status_code == 201
    found = await attestations_of(http, att, registry, "V1", 2)
    assert sorted(a["code"] for a in found) == named


async def test_concurrent_first_downloads_all_get_the_whole_signed_pdf(
    services: tuple[Registry, Attestations], http: httpx.AsyncClient
) -> None:
    from tests.attestations.hostile import service_signer, signed_whole_by

    registry, att = services
    auth = registry.auth()
    await http.post(f"{registry.url}/v1/candidates", json=candidate("F1"), headers=auth)
    created = await http.post(
        f"{registry.url}/v1/deliberations", json=pv(full_lines("F1", "12")), headers=auth
    )
    assert created.status_code == 201
    found = await attestations_of(http, att, registry, "F1", 13)
    cache = att.var / "pdf"
    for attestation in found[:3]:  # each not cached yet, asked for by 8 clients at once
        url = f"{att.url}/v1/attestations/{attestation['id']}/pdf"
        assert not (cache / f"{attestation['id']}.pdf").exists()
        answers = await asyncio.gather(*(http.get(url, headers=auth) for _ in range(8)))
        assert [r.status_code for r in answers] == [200] * 8
        bodies = {r.content for r in answers}
        assert len(bodies) == 1  # built once: every client got the same file
        (pdf,) = bodies
        assert await asyncio.to_thread(signed_whole_by, pdf, service_signer(att))
        stored = (cache / f"{attestation['id']}.pdf").read_bytes()
        key = load_store_key(att.var / "keys" / "attestations-store.key", create=False)
        cipher = CacheCipher(base64.b64decode(key))
        assert cipher.open(stored, f"{attestation['id']}.pdf") == pdf  # kept encrypted
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*"))


async def test_the_attestations_state_the_jurys_facts_end_to_end(
    services: tuple[Registry, Attestations], http: httpx.AsyncClient
) -> None:
    """A PV with a diploma (average 14: mention Bien), over real HTTP and NATS: the jury's
    date, the session, the route and the mention on the credential, the page, its JSON and
    the PDF; the exam center's name only for the candidate who asked for it."""
    from io import BytesIO

    import pypdf

    registry, att = services
    auth = registry.auth()
    bad = await http.post(
        f"{registry.url}/v1/candidates",
        json=candidate("M9", show_exam_center="oui"),
        headers=auth,
    )
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    for number, shown in (("M1", True), ("M2", False)):
        r = await http.post(
            f"{registry.url}/v1/candidates",
            json=candidate(number, show_exam_center=shown),
            headers=auth,
        )
        assert r.status_code == 201
    lines = full_lines("M1", "14") + full_lines("M2", "14")
    created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
    assert created.status_code == 201

    mine = await attestations_of(http, att, registry, "M1", 13)
    diploma = next(a for a in mine if a["kind"] == "certification")
    body = (await http.get(diploma["verify_url"], headers={"Accept": "application/json"})).json()
    assert body["awarded_on"] == "2026-07-03"
    assert body["session"] == {"code": "2026-06", "label": "session de juin 2026"}
    assert body["route"] == {"code": "exam", "label": "par examen"}
    assert body["mention"] == {"code": "bien", "label": "Bien"}
    assert body["exam_center"] == {"uai": CENTER_A, "name": f"Centre {CENTER_A}"}
    page = (await http.get(diploma["verify_url"])).text
    assert '<time datetime="2026-07-03">3 juillet 2026</time>' in page
    assert "<dd>Session de juin 2026</dd>" in page and "<dd>Par examen</dd>" in page
    assert "<dt>Mention</dt>\n  <dd>Bien</dd>" in page
    assert f"<dd>Centre {CENTER_A}</dd>" in page

    jws = (
        await http.get(f"{att.url}/v1/attestations/{diploma['id']}/credential", headers=auth)
    ).text
    credential = independent_verify(
        jws, (await http.get(f"{att.url}/.well-known/jwks.json")).json()
    )
    assert schema_problems(credential) == []
    assert credential["awardedDate"] == "2026-07-03T00:00:00Z"
    assert credential["validFrom"] != credential["awardedDate"]  # signed later, not on the 3rd
    assert credential["credentialSubject"]["result"][0]["value"] == "Bien"
    assert credential["credentialSubject"]["term"] == "session de juin 2026"
    assert credential["credentialSubject"]["source"]["name"] == f"Centre {CENTER_A}"

    pdf = await http.get(f"{att.url}/v1/attestations/{diploma['id']}/pdf", headers=auth)
    assert pdf.status_code == 200
    text = " ".join(
        " ".join(p.extract_text().split()) for p in pypdf.PdfReader(BytesIO(pdf.content)).pages
    )
    assert "Certification obtenue par examen, session de juin 2026, mention Bien." in text
    assert "sur décision du jury du 3 juillet 2026." in text
    assert f"Centre d'examen : Centre {CENTER_A}." in text

    theirs = await attestations_of(http, att, registry, "M2", 13)
    bloc = next(a for a in theirs if a["code"] == "RNCP40705BC01")
    body = (await http.get(bloc["verify_url"], headers={"Accept": "application/json"})).json()
    assert body["route"]["code"] == "exam" and body["awarded_on"] == "2026-07-03"
    assert "exam_center" not in body and "mention" not in body
    assert "Centre d'examen" not in (await http.get(bloc["verify_url"])).text
