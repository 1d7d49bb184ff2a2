"""The Data Integrity form end to end: the service serves each credential and its status list
with an eddsa-rdfc-2022 proof (``?format=ldp_vc`` or ``Accept: application/vc+ld+json``; the
JWS stays the default); an independent verifier (@digitalbazaar/vc with the eddsa-rdfc-2022
cryptosuite and vc-bitstring-status-list, tests/js/verify-di.mjs) resolves the did:web over
https, verifies it and its status, sees a revocation, refuses a tampered copy; POST /v1/verify
accepts the same document and refuses the same tampering.

Served over https on localhost as in ``test_did_web_node`` (the did:web follows from
``ATTESTATIONS_PUBLIC_BASE_URL`` alone)."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.attestations.domain.jose import unverified_header, unverified_payload
from tests.attestations.harness import Attestations, serve_attestations
from tests.attestations.test_service import attestations_of, until
from tests.registry.harness import Registry, candidate, full_lines, pv, serve_registry
from tests.support import node
from tests.support.processes import NatsServer
from tools import nats_tls

SCRIPT = node.JS_DIR / "verify-di.mjs"
LD = "application/vc+ld+json"


@pytest.fixture
def over_https(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> Iterator[tuple[Registry, Attestations, Path]]:
    for package in (
        "@digitalbazaar/vc",
        "@digitalbazaar/data-integrity",
        "@digitalbazaar/eddsa-rdfc-2022-cryptosuite",
        "@digitalbazaar/vc-bitstring-status-list",
    ):
        node.package_dir(package)  # fails naming `make test` when npm ci has not run
    tls = tmp_path / "tls"
    nats_tls.ensure(tls, hosts=("localhost",))
    with (
        serve_registry(tmp_path / "registry", nats_server.url) as registry,
        serve_attestations(tmp_path / "attestations", nats_server.url, tls=tls) as att,
    ):
        yield registry, att, tls / nats_tls.CA_CERT


def node_verify(document: dict[str, Any], ca: Path) -> dict[str, Any]:
    """The Node verifier's verdict on ``document``."""
    return node.verdict(SCRIPT, json.dumps(document), ca=ca)


def tampered(document: dict[str, Any]) -> dict[str, Any]:
    forged = copy.deepcopy(document)
    forged["credentialSubject"]["identifier"][0]["identityHash"] = "Quelqu'un d'autre"
    return forged


async def our_verify(http: httpx.AsyncClient, att: Attestations, document: Any) -> Any:
    r = await http.post(
        f"{att.url}/v1/verify", content=json.dumps(document), headers={"content-type": LD}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_node_and_our_verifier_accept_the_data_integrity_form(
    over_https: tuple[Registry, Attestations, Path],
) -> None:
    registry, att, ca = over_https
    auth = registry.auth()
    trust = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(timeout=30, verify=trust) as http:
        await http.post(f"{registry.url}/v1/candidates", json=candidate("D1"), headers=auth)
        lines = [line for line in full_lines("D1", "14") if line["bloc"] == "RNCP40705BC01"]
        created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
        assert created.status_code == 201
        (item,) = await attestations_of(http, att, registry, "D1", 1)
        url = f"{att.url}/v1/attestations/{item['id']}/credential"
        token = (await http.get(url, headers=auth)).text
        by_format = await http.get(url, params={"format": "ldp_vc"}, headers=auth)
        by_accept = await http.get(url, headers={**auth, "Accept": LD})
        by_ld_json = await http.get(url, headers={**auth, "Accept": "application/ld+json"})
        jwt_preferred = await http.get(
            url, headers={**auth, "Accept": f"{LD};q=0.5, application/vc+jwt"}
        )
        assert by_format.status_code == 200, by_format.text
        assert by_format.headers["content-type"] == LD
        assert by_format.content == by_accept.content == by_ld_json.content  # deterministic
        assert jwt_preferred.text == token  # the JWS by default, and when preferred
        assert "private" in by_format.headers["cache-control"]
        document = by_format.json()
        status_url = document["credentialStatus"]["statusListCredential"]
        status_list = await http.get(status_url, params={"format": "ldp_vc"})
        assert status_list.headers["content-type"] == LD
        status_doc = status_list.json()
        assert (await http.get(status_url)).headers["content-type"] == "application/vc+jwt"
        ours = await our_verify(http, att, document)
        ours_tampered = await our_verify(http, att, tampered(document))
        # The same format parameter is bounded: anything else is a 422.
        assert (await http.get(url, params={"format": "sd"}, headers=auth)).status_code == 422

    # Derived from the JWS: the same credential, the same verification method.
    payload = unverified_payload(token)
    assert {k: v for k, v in document.items() if k != "proof"} == {
        k: v for k, v in payload.items() if k not in ("iss", "jti")
    }
    (proof,) = document["proof"]
    assert proof["verificationMethod"] == unverified_header(token)["kid"]
    assert proof["type"] == "DataIntegrityProof" and proof["cryptosuite"] == "eddsa-rdfc-2022"
    assert proof["proofPurpose"] == "assertionMethod" and proof["created"] == payload["validFrom"]
    assert proof["proofValue"].startswith("z")
    assert status_doc["proof"][0]["verificationMethod"] == proof["verificationMethod"]

    assert ours["valid"] is True and ours["status"] == "valid", ours
    assert ours["holder"]["name"] and ours["achievement"]["code"] == "RNCP40705BC01"
    assert ours_tampered["valid"] is False
    assert {c["name"]: c["ok"] for c in ours_tampered["checks"]}["signature"] is False

    verdict = await asyncio.to_thread(node_verify, document, ca)
    assert verdict == {
        "verified": True,
        "revoked": False,
        "statusVerified": True,
        "verificationMethod": proof["verificationMethod"],
        "id": item["verify_url"],
    }, verdict
    refused = await asyncio.to_thread(node_verify, tampered(document), ca)
    assert refused["verified"] is False, refused
    status_alone = await asyncio.to_thread(node_verify, status_doc, ca)
    assert status_alone["verified"] is True and status_alone["id"] == status_url
    forged_list = copy.deepcopy(status_doc)
    forged_list["credentialSubject"]["statusPurpose"] = "suspension"
    assert (await asyncio.to_thread(node_verify, forged_list, ca))["verified"] is False

    # Revoked: the status list (re-signed) says so to both verifiers.
    async with httpx.AsyncClient(timeout=30, verify=trust) as http:
        correction = await http.post(
            f"{registry.url}/v1/corrections",
            headers=auth,
            json={
                "deliberation_id": created.json()["deliberation_id"],
                "candidate_number": "D1",
                "bloc": "RNCP40705BC01",
                "grade": "3",
                "reason": "Erreur de report de note",
            },
        )
        assert correction.status_code == 201

        async def revoked() -> Any:
            report = await our_verify(http, att, document)
            return report if report["status"] == "revoked" else None

        after = await until(revoked)
        assert after["valid"] is False
        new_list = (await http.get(status_url, headers={"Accept": LD})).json()
        assert new_list["proof"] != status_doc["proof"]  # a new list, a new proof
    verdict = await asyncio.to_thread(node_verify, document, ca)
    assert verdict["verified"] is True and verdict["revoked"] is True, verdict
