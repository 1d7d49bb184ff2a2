"""POST /v1/verify against hostile input, over real HTTP: malformed credentials and PDFs are a
failed check or a 4xx, never a 5xx; a PDF verifies as a PDF (its PAdES signature is a check of
its own); a hostile PDF costs a worker process its time limit and stalls nothing else."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers

from services.attestations.pdf import PdfContent, PdfSigner, render
from services.attestations.pdf_inspection import NO_CREDENTIAL, PdfInspector
from tests.attestations.harness import Attestations
from tests.attestations.hostile import (
    HOLDER,
    checks_of,
    deep_kids_pdf,
    huge_name_tree_pdf,
    issue_genuine,
    raw_pdf,
    serve_pair,
    verify_pdf,
)
from tests.registry.harness import Registry
from tests.support.processes import NatsServer

JWS_TYPE = {"content-type": "application/vc+jwt"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(header: Any, payload: bytes = b"{}", signature: str = "c2ln") -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return f"{_b64(head)}.{_b64(payload)}.{signature}".encode()


HOSTILE_JWS = {
    "100k [ raw": b"[" * 100_000,
    "100k [ header": _token(b"[" * 40_000),  # over the header cap
    "3k [ header": _token(b"[" * 3_000),  # under the cap: json's RecursionError
    "deep object header": _token(b'{"a":' * 2_000 + b"1" + b"}" * 2_000),
    "bad base64": b"!!!.???.###",
    "non-UTF-8 bytes": b"\xff\xfe.\xff\xfe.\xff",
    "non-UTF-8 header": _token(b'\xff\xfe{"alg":"EdDSA"}'),
    "header not an object": _token([1, 2]),
    "odd header types": _token({"typ": 7, "kid": {"a": [1]}, "alg": ["EdDSA"]}),
    "unknown kid": _token({"typ": "vc+jwt", "kid": "nope", "alg": "EdDSA"}),
    "huge payload": _token({"typ": "vc+jwt", "kid": "x", "alg": "EdDSA"}, b"7" * 40_000),
    "empty": b"",
    "dots only": b"..",
    "NUL bytes": b"\x00" * 1000,
    "too many parts": b"a.b.c.d.e",
}


async def test_malformed_jws_is_a_failed_check_or_413(
    services: tuple[Registry, Attestations],
) -> None:
    _, att = services
    async with httpx.AsyncClient(timeout=30) as http:
        # With the issuer's real kid, the header's other fields are read too (an alg that is
        # a list or an object answered 500).
        kid = (await http.get(f"{att.url}/.well-known/jwks.json")).json()["keys"][0]["kid"]
        real_kid = {
            f"real kid, alg {alg!r}": _token({"typ": "vc+jwt", "kid": kid, "alg": alg})
            for alg in (["EdDSA"], {"a": 1}, 7, None, "none", "HS256")
        }
        for name, body in {**HOSTILE_JWS, **real_kid}.items():
            r = await http.post(f"{att.url}/v1/verify", content=body, headers=JWS_TYPE)
            if len(body) > 64 * 1024:  # the issue's probe: refused before it is parsed
                assert r.status_code == 413, (name, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                continue
            assert r.status_code == 200, (name, r.text)
            report = r.json()
            assert report["valid"] is False and report["holder"] is None, name
            assert not all(c["ok"] for c in report["checks"]), name


async def test_bodies_over_their_cap_are_413_in_french(
    services: tuple[Registry, Attestations],
) -> None:
    _, att = services
    async with httpx.AsyncClient(timeout=30) as http:
        too_big_jws = await http.post(
            f"{att.url}/v1/verify", content=b"a" * (64 * 1024 + 1), headers=JWS_TYPE
        )
        too_big_pdf = await verify_pdf(http, att, b"%PDF-1.7\n" + bytes(2 * 1024 * 1024))

        async def chunked() -> Any:  # no Content-Length: capped while it streams in
            for _ in range(40):
                yield bytes(64 * 1024)

        streamed = await http.post(
            f"{att.url}/v1/verify",
            content=chunked(),
            headers={"content-type": "application/pdf"},
        )
    for r in (too_big_jws, too_big_pdf, streamed):
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "trop volumineu" in r.json()["title"]  # French, and the title of a 413
        assert "dépasse" in r.json()["detail"]


def _annotate(pdf: bytes, text: str) -> bytes:
    """An incremental update after the signature: a FreeText annotation on page 1."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    page = writer.root["/Pages"]["/Kids"][0]
    annotation = generic.DictionaryObject(  # type: ignore[no-untyped-call]
        {
            generic.pdf_name("/Type"): generic.pdf_name("/Annot"),
            generic.pdf_name("/Subtype"): generic.pdf_name("/FreeText"),
            generic.pdf_name("/Rect"): generic.ArrayObject(
                [generic.NumberObject(v) for v in (50, 700, 400, 740)]  # type: ignore[no-untyped-call]
            ),
            generic.pdf_name("/Contents"): generic.TextStringObject(text),
            generic.pdf_name("/DA"): generic.TextStringObject("/Helv 18 Tf 0 g"),
        }
    )
    page[generic.pdf_name("/Annots")] = generic.ArrayObject([writer.add_object(annotation)])
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def _signed_twice(pdf: bytes, identity: Path) -> bytes:
    """Two approval signatures by another identity (the service's own forbids any change)."""
    bundle = identity / "pdf-signer.pem"
    signer = signers.SimpleSigner.load(str(bundle), str(bundle))  # type: ignore[no-untyped-call]
    assert signer is not None
    for field in ("Signature1", "Signature2"):
        out = BytesIO()
        signers.sign_pdf(
            IncrementalPdfFileWriter(BytesIO(pdf)),
            signers.PdfSignatureMetadata(field_name=field),
            signer=signer,
            output=out,
        )
        pdf = out.getvalue()
    return pdf


async def test_a_pdf_verifies_as_a_pdf(
    services: tuple[Registry, Attestations], tmp_path: Path
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30) as http:
        genuine = await issue_genuine(http, registry, att)

        report = (await verify_pdf(http, att, genuine.pdf)).json()
        assert report["valid"] is True, report
        assert [c["name"] for c in report["checks"]] == [
            "format",
            "pades",
            "issuer-key",
            "signature",
            "claims",
            "schema",
            "status",
        ]
        assert "signé par le service" in checks_of(report)["pades"]["detail"]
        # Whoever holds the paper can compare: whose it is, what, since when.
        assert report["holder"]["name"] == HOLDER
        assert report["holder"]["family_name"] == "Durand"
        assert report["achievement"]["code"] == "RNCP40705BC01"
        assert report["achievement"]["kind"] == "bloc"
        assert report["achievement"]["title"]
        assert report["achievement"]["certification"]["code"] == "RNCP40705"
        assert report["achievement"]["certification"]["title"]
        assert report["achievement"]["issued_at"][:4] == str(date.today().year)
        jws_report = (
            await http.post(f"{att.url}/v1/verify", content=genuine.jws, headers=JWS_TYPE)
        ).json()
        assert jws_report["valid"] is True and jws_report["holder"]["name"] == HOLDER

        # The issue's probe: the genuine credential attached to a PDF printing another name.
        page = await http.get(genuine.verify_url, headers={"Accept": "application/json"})
        content = PdfContent(
            attestation_id=genuine.id,
            holder_name="Marc Imposteur",
            kind="bloc",
            code="RNCP40705BC01",
            title=page.json()["achievement"]["title"],
            competences=(),
            certification_code="RNCP40705",
            certification_title="Certification",
            issuer_name="Ministère",
            issued_on=date.today(),
            verify_url=genuine.verify_url,
        )
        forged = render(content, genuine.jws)
        other_signer = PdfSigner.load_or_create(tmp_path / "other", common_name="certibloc")
        # pyHanko's signing runs its own event loop: off this one.
        signed_by_other = await asyncio.to_thread(other_signer.sign, forged)
        annotated = _annotate(genuine.pdf, "Marc Imposteur")

        expected = {
            "unsigned": (forged, "n'est pas signé par le service"),
            "other identity": (signed_by_other, "n'est pas signé par le service"),
            "incremental update": (annotated, "modifié après signature"),
        }
        for case, (pdf, reason) in expected.items():
            r = await verify_pdf(http, att, pdf)
            assert r.status_code == 200, (case, r.text)
            report = r.json()
            assert report["valid"] is False, case
            pades = checks_of(report)["pades"]
            assert pades["ok"] is False and reason in pades["detail"], (case, pades)
            # The credential itself is genuine: the report says whose it is, not whose the
            # paper claims.
            assert checks_of(report)["signature"]["ok"] is True, case
            assert report["holder"]["name"] == HOLDER, case

        twice = await asyncio.to_thread(_signed_twice, forged, tmp_path / "other")
        report = (await verify_pdf(http, att, twice)).json()
        assert report["valid"] is False
        assert "2 signatures" in checks_of(report)["pades"]["detail"]


async def test_a_hostile_pdf_costs_its_time_limit_and_stalls_nothing(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    limit = 1.0
    with serve_pair(
        tmp_path, nats_server.url, verify_pdf_workers=1, verify_pdf_time_limit_seconds=limit
    ) as (registry, att):
        async with httpx.AsyncClient(timeout=30) as http:
            genuine = await issue_genuine(http, registry, att)
            hostile = huge_name_tree_pdf()
            assert len(hostile) < 2 * 1024 * 1024
            loop = asyncio.get_running_loop()
            done = asyncio.Event()

            async def poll() -> list[float]:
                # 1.5 s per request, while the hostile PDF costs 5-10 s of CPU (cut at 1 s in
                # its worker): an event loop it stalled would fail this; slack for a busy machine.
                latencies = []
                async with httpx.AsyncClient(timeout=1.5) as quick:
                    while not done.is_set():
                        start = loop.time()
                        health = await quick.get(f"{att.url}/healthz")
                        page = await quick.get(
                            genuine.verify_url, headers={"Accept": "application/json"}
                        )
                        latencies.append(loop.time() - start)
                        assert health.status_code == 200 and page.status_code == 200
                        await asyncio.sleep(0.02)
                return latencies

            async def attack() -> list[httpx.Response]:
                try:
                    return list(
                        await asyncio.gather(*(verify_pdf(http, att, hostile) for _ in range(2)))
                    )
                finally:
                    done.set()

            started = loop.time()
            latencies, answers = await asyncio.gather(poll(), attack())
            elapsed = loop.time() - started
        for r in answers:
            assert r.status_code == 200, r.text
            report = r.json()
            assert report["valid"] is False
            assert checks_of(report)["format"]["ok"] is False
            assert "analyse du PDF trop longue" in checks_of(report)["format"]["detail"]
        # Two hostile PDFs on one worker: twice the limit plus restarts, not their full cost.
        assert elapsed < 2 * limit + 3, elapsed
        assert len(latencies) >= 5 and max(latencies) < 3.0
        # The killed worker was replaced: a genuine PDF still verifies.
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await verify_pdf(http, att, genuine.pdf)).json()["valid"] is True


async def test_a_pdf_over_the_memory_limit_is_refused_and_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    signer = PdfSigner.load_or_create(tmp_path / "keys")
    inspector = PdfInspector(
        signer.certificate_pem, workers=1, memory_bytes=160 << 20, time_limit=60
    )
    await inspector.start()
    try:
        # 1.5 million numbers in one array: a few MB of file, hundreds of MB of objects.
        greedy = raw_pdf([b"<</Type/Catalog/Names[" + b"0 " * 1_500_000 + b"]>>"])
        refused = await inspector.inspect(greedy)
        assert refused.credential is None and "mémoire" in refused.format_detail
        after = await inspector.inspect(deep_kids_pdf(10))
        assert after.format_detail == NO_CREDENTIAL and after.pades_ok is False
    finally:
        await inspector.close()


async def test_pdfs_beyond_the_waiting_room_get_429(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    with serve_pair(
        tmp_path,
        nats_server.url,
        verify_pdf_workers=1,
        verify_pdf_time_limit_seconds=2.0,
        verify_pdf_max_waiting=0,
    ) as (_, att):
        async with httpx.AsyncClient(timeout=30) as http:
            slow, small = huge_name_tree_pdf(), raw_pdf([b"<</Type/Catalog>>"])
            busy = None
            for _ in range(10):  # the slow one may itself find the worker busy: again
                hostile = asyncio.create_task(verify_pdf(http, att, slow))
                while busy is None and not hostile.done():
                    r = await verify_pdf(http, att, small)
                    assert r.status_code in (200, 429), r.text
                    busy = r if r.status_code == 429 else None
                assert (await hostile).status_code in (200, 429)
                if busy is not None:
                    break
            assert busy is not None, "the worker was never seen busy"
            assert busy.headers["content-type"] == "application/problem+json"
            assert busy.headers["retry-after"] == "5"
            assert "réessayez" in busy.json()["detail"]


SD_JWT_TYPE = {"content-type": "application/dc+sd-jwt"}


async def test_hostile_sd_jwts_are_failed_checks_never_5xx(
    services: tuple[Registry, Attestations],
) -> None:
    """The SD-JWT VC form: every malformed JWS above (as an SD-JWT too), and SD-JWTs signed
    with the issuer's real key whose disclosures, digests or claims are hostile."""
    from services.attestations.domain import sd_jwt
    from services.attestations.domain.jose import sign_typed

    _, att = services
    key = att.app.signing_key()
    base = att.app.links.base_url
    good = {
        "iss": att.app.issuers.did,
        "iat": 1_800_000_000,
        "vct": f"{base}/vct/RNCP40705/bloc",
        "status": {"status_list": {"idx": 0, "uri": f"{base}/v1/token-status-lists/1"}},
        "_sd_alg": "sha-256",
    }
    deep_text = '["salt","bloc",' + "[" * 3_000 + "]" * 3_000 + "]"
    deep = sd_jwt.Disclosure(sd_jwt.b64url(deep_text.encode()), "salt", "bloc", None)
    nested: Any = 1
    for _ in range(30):
        nested = {"a": nested}
    nest = sd_jwt.disclose("bloc", nested)
    one = sd_jwt.disclose("given_name", "Léa")

    def signed(payload: dict[str, Any], *disclosures: str) -> bytes:
        return "~".join([sign_typed(payload, key, "dc+sd-jwt"), *disclosures, ""]).encode()

    hostile = {
        **{f"{name} (jws)": body for name, body in HOSTILE_JWS.items()},
        **{f"{name} (sd-jwt)": body + b"~" for name, body in HOSTILE_JWS.items()},
        "10k disclosures": signed(good, *(["WyJhIiwiYiIsMV0"] * 3_000)),
        "empty disclosure": signed(good, "", one.encoded),
        "bad base64 disclosure": signed({**good, "_sd": [one.digest]}, "!!!"),
        "disclosure not an array": signed({**good, "_sd": []}, sd_jwt.b64url(b'{"a":1}')),
        "3k-deep disclosure": signed({**good, "_sd": [deep.digest]}, deep.encoded),
        "30-deep disclosure": signed({**good, "_sd": [nest.digest]}, nest.encoded),
        "duplicate digests": signed({**good, "_sd": [one.digest] * 2}, one.encoded),
        "duplicate disclosure": signed({**good, "_sd": [one.digest]}, one.encoded, one.encoded),
        "_sd not a list": signed({**good, "_sd": {"a": 1}}),
        "digest not a string": signed({**good, "_sd": [7, None]}),
        "10k digests": signed({**good, "_sd": ["x" * 3] * 10_000}),
        "idx out of range": signed(
            {
                **good,
                "status": {"status_list": {"idx": 2**62, "uri": f"{base}/v1/token-status-lists/1"}},
            }
        ),
        "idx a float": signed({**good, "status": {"status_list": {"idx": 1.5, "uri": "u"}}}),
        "foreign vct": signed({**good, "vct": "https://evil.example/vct"}),
        "no iss": signed({k: v for k, v in good.items() if k != "iss"}),
        "garbage KB-JWT": signed(good) + b"\xff.\xfe.\xfd",
        "KB-JWT without cnf": signed(good) + b"a.b.c",
        "KB-JWT with a bad cnf": signed({**good, "cnf": {"jwk": {"kty": "OKP", "x": 1}}})
        + b"e30.e30.c2ln",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        for name, body in hostile.items():
            r = await http.post(f"{att.url}/v1/verify", content=body, headers=SD_JWT_TYPE)
            if len(body) > 64 * 1024:
                assert r.status_code == 413, (name, r.text)
                continue
            assert r.status_code == 200, (name, r.text)
            report = r.json()
            assert report["valid"] is False and report["format"] == "dc+sd-jwt", (name, report)
            assert not all(c["ok"] for c in report["checks"]), name
            assert "given_name" not in report.get("claims", {}), name
