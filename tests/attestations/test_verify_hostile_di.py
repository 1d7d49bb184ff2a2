"""POST /v1/verify with a JSON(-LD) body, over real HTTP, against hostile input: malformed JSON,
deep nesting, huge numbers, unknown or inline contexts, undefined terms, forged proofs are a
failed check (200) or a 413, never a 5xx; a genuine Data Integrity credential verifies under
each JSON content type."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx

from tests.attestations.harness import Attestations
from tests.attestations.hostile import checks_of
from tests.attestations.test_service import attestations_of
from tests.registry.harness import Registry, candidate, full_lines, pv

JSON_TYPES = ("application/vc+ld+json", "application/ld+json", "application/json")


async def _genuine(http: httpx.AsyncClient, registry: Registry, att: Attestations) -> Any:
    auth = registry.auth()
    await http.post(f"{registry.url}/v1/candidates", json=candidate("H1"), headers=auth)
    lines = [line for line in full_lines("H1", "14") if line["bloc"] == "RNCP40705BC02"]
    created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
    assert created.status_code == 201, created.text
    (item,) = await attestations_of(http, att, registry, "H1", 1)
    r = await http.get(
        f"{att.url}/v1/attestations/{item['id']}/credential",
        params={"format": "ldp_vc"},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _poison(k: int) -> dict[str, Any]:
    return {"type": "VerifiableCredential", "credentialSubject": [{}] * k}


def _with(document: Any, **changes: Any) -> Any:
    out = copy.deepcopy(document)
    out.update(changes)
    return out


async def test_hostile_json_is_a_failed_check_never_a_5xx(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30) as http:
        genuine = await _genuine(http, registry, att)
        proof = genuine["proof"][0]
        context = genuine["@context"]
        raw: dict[str, bytes] = {
            "empty": b"",
            "not JSON": b"{",
            "not UTF-8": b'{"\xff": 1}',
            "30k [": b"[" * 30_000,
            "deep objects": b'{"@context": [], "a": ' + b'{"a": ' * 900 + b"1" + b"}" * 901,
            "huge integer": b'{"@context": [], "n": ' + b"9" * 20_000 + b"}",
            "huge exponent": b'{"@context": [], "n": 1e99999}',
            "NaN": b'{"@context": [], "n": NaN}',
            "a string": b'"eyJ..."',
            "a JWS as JSON": json.dumps("a.b.c").encode(),
        }
        documents: dict[str, Any] = {
            "no proof": _with(genuine, proof=None),
            "unknown context": _with(genuine, **{"@context": [*context, "https://x.example/c"]}),
            "context not a list": _with(genuine, **{"@context": context[0]}),
            "inline context": _with(genuine, **{"@context": [*context, {"@vocab": "urn:x:"}]}),
            "nested context": _with(genuine, evidence=[{"@context": {"a": "urn:a"}, "a": 1}]),
            "blank node ids": _with(genuine, credentialSubject={"@id": "_:b0"}),
            "undefined term": _with(genuine, rogue="added after signing"),
            "keyword-like key": _with(genuine, **{"@rogue": 1}),
            "tampered name": _with(genuine, name="Attestation de complaisance"),
            "other cryptosuite": _with(
                genuine, proof=[{**proof, "cryptosuite": "ecdsa-rdfc-2019"}]
            ),
            "foreign method": _with(
                genuine, proof=[{**proof, "verificationMethod": "did:web:evil.example#k"}]
            ),
            "method not a string": _with(
                genuine, proof=[{**proof, "verificationMethod": {"a": 1}}]
            ),
            "proofValue not base58": _with(genuine, proof=[{**proof, "proofValue": "z0OIl"}]),
            "proofValue a number": _with(genuine, proof=[{**proof, "proofValue": 7}]),
            "created a list": _with(genuine, proof=[{**proof, "created": [1]}]),
            "two proofs": _with(genuine, proof=[proof, proof]),
            "odd types": _with(genuine, type={"a": [1]}, issuer=[None], validFrom=12),
            # Found by a review: RDFC-1.0 tries every permutation of look-alike anonymous
            # nodes (k=8 held the CPU 14 s), refused by their count before canonicalization.
            "poison graph": _with(genuine, credentialSubject=[_poison(8), _poison(8)]),
            # ... and "@nest" moved a signed value where the report does not read it.
            "nested value": _with(genuine, **{"@nest": {"name": genuine["name"]}, "name": None}),
            "proofValue huge": _with(genuine, proof=[{**proof, "proofValue": "z" + "2" * 60_000}]),
        }
        bodies = {**raw, **{k: json.dumps(v).encode() for k, v in documents.items()}}
        for media in JSON_TYPES:
            ok = await http.post(
                f"{att.url}/v1/verify", content=json.dumps(genuine), headers={"content-type": media}
            )
            assert ok.status_code == 200 and ok.json()["valid"] is True, (media, ok.text)
            for name, body in bodies.items():
                r = await http.post(
                    f"{att.url}/v1/verify", content=body, headers={"content-type": media}
                )
                assert r.status_code == 200, (media, name, r.text)
                report = r.json()
                assert report["valid"] is False, (media, name)
                assert not all(c["ok"] for c in report["checks"]), (media, name)
        unknown = checks_of(
            (
                await http.post(
                    f"{att.url}/v1/verify",
                    content=json.dumps(documents["unknown context"]),
                    headers={"content-type": JSON_TYPES[0]},
                )
            ).json()
        )
        assert unknown["context"]["ok"] is False
        assert "https://x.example/c" in unknown["context"]["detail"]
        too_big = await http.post(
            f"{att.url}/v1/verify",
            content=b'{"a": "' + b"x" * (64 * 1024) + b'"}',
            headers={"content-type": JSON_TYPES[0]},
        )
        assert too_big.status_code == 413
        assert too_big.headers["content-type"] == "application/problem+json"
