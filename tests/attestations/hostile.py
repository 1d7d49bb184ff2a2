"""Hostile inputs for POST /v1/verify, and a genuine signed PDF to derive them from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from pyhanko.keys import load_certs_from_pemder_data
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from services.attestations.pdf import PdfSigner
from tests.attestations.harness import Attestations, serve_attestations
from tests.attestations.test_service import attestations_of
from tests.registry.harness import Registry, candidate, full_lines, pv, serve_registry

HOLDER = "Léa Durand"


@dataclass
class Genuine:
    """An attestation issued by the running service, its credential and its signed PDF."""

    id: str
    verify_url: str
    jws: str
    pdf: bytes


@contextmanager
def serve_pair(
    tmp: Path, nats_url: str, **settings: Any
) -> Iterator[tuple[Registry, Attestations]]:
    """Registry and attestations, the latter with its own settings (PDF worker limits...)."""
    with (
        serve_registry(tmp / "registry", nats_url) as registry,
        serve_attestations(tmp / "attestations", nats_url, **settings) as attestations,
    ):
        yield registry, attestations


async def issue_genuine(http: httpx.AsyncClient, registry: Registry, att: Attestations) -> Genuine:
    """A candidate passes every bloc; their BC01 attestation, downloaded as the center would."""
    auth = registry.auth()
    await http.post(f"{registry.url}/v1/candidates", json=candidate("F1"), headers=auth)
    created = await http.post(
        f"{registry.url}/v1/deliberations", json=pv(full_lines("F1", "12")), headers=auth
    )
    assert created.status_code == 201, created.text
    found = await attestations_of(http, att, registry, "F1", 13)
    bc01 = next(a for a in found if a["code"] == "RNCP40705BC01")
    base = f"{att.url}/v1/attestations/{bc01['id']}"
    jws = (await http.get(f"{base}/credential", headers=auth)).text
    pdf = await http.get(f"{base}/pdf", headers=auth)
    assert pdf.status_code == 200
    return Genuine(bc01["id"], bc01["verify_url"], jws, pdf.content)


def service_signer(att: Attestations) -> PdfSigner:
    return PdfSigner.load_or_create(att.var / "keys" / "attestations" / "pdf")


def signed_whole_by(pdf: bytes, signer: PdfSigner) -> bool:
    """pyHanko's own verdict: one signature by ``signer``, intact, trusted, whole file."""
    cert = next(iter(load_certs_from_pemder_data(signer.certificate_pem)))
    signatures = PdfFileReader(BytesIO(pdf)).embedded_signatures
    if len(signatures) != 1:
        return False
    status = validate_pdf_signature(signatures[0], ValidationContext(trust_roots=[cert]))
    return bool(status.bottom_line and status.coverage == SignatureCoverageLevel.ENTIRE_FILE)


async def verify_pdf(http: httpx.AsyncClient, att: Attestations, pdf: bytes) -> httpx.Response:
    return await http.post(
        f"{att.url}/v1/verify", content=pdf, headers={"content-type": "application/pdf"}
    )


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


# --------------------------------------------------------------------------- crafted PDFs


def raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF written by hand: objects 1..n, a classic xref table, a trailer."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<</Size %d/Root %d 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        xref,
    )
    return bytes(out)


def huge_name_tree_pdf(entries: int = 20_000) -> bytes:
    """The issue's probe: 20,000 embedded-file entries, each also a signature field to walk
    (about 1.8 MB, seconds of pyHanko's time)."""
    objects = [
        b"<</Type/Catalog/Pages 2 0 R/AcroForm 3 0 R/Names<</EmbeddedFiles 4 0 R>>>>",
        b"<</Type/Pages/Kids[]/Count 0>>",
        b"",
        b"",
    ]
    fields = bytearray(b"<</Fields[")
    names = bytearray(b"<</Names[")
    for i in range(entries):
        fields += b"%d 0 R" % (5 + i)
        names += b"(%d)%d 0 R" % (i, 5 + i)
        objects.append(b"<</FT/Sig/T(%d)/F(%d)>>" % (i, i))
    objects[2] = bytes(fields + b"]>>")
    objects[3] = bytes(names + b"]>>")
    return raw_pdf(objects)


def deep_kids_pdf(depth: int = 5_000) -> bytes:
    """A page tree nested ``depth`` levels deep (each /Kids holds the next node)."""
    objects = [b"<</Type/Catalog/Pages 2 0 R/Names<</EmbeddedFiles 2 0 R>>>>"]
    for level in range(depth):
        objects.append(b"<</Type/Pages/Kids[%d 0 R]/Count 1>>" % (3 + level))
    objects.append(b"<</Type/Page/MediaBox[0 0 10 10]>>")
    return raw_pdf(objects)


def deep_array_pdf(depth: int = 100_000) -> bytes:
    """A catalog whose /Names is an array nested ``depth`` deep (a recursive-descent parser's
    stack)."""
    return raw_pdf([b"<</Type/Catalog/Names " + b"[" * depth + b"]" * depth + b">>"])


def flate_bomb_pdf() -> bytes:
    """An attachment named like ours whose Flate stream inflates to 1 GiB of zeros."""
    import zlib

    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    data = b"".join(compressor.compress(chunk) for _ in range(1024)) + compressor.flush()
    return raw_pdf(
        [
            b"<</Type/Catalog/Names<</EmbeddedFiles<</Names[(attestation.vc.jwt)2 0 R]>>>>>>",
            b"<</Type/Filespec/F(attestation.vc.jwt)/EF<</F 3 0 R>>>>",
            b"<</Length %d/Filter/FlateDecode>>stream\n" % len(data) + data + b"\nendstream",
        ]
    )
