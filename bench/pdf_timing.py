"""Benchmark: the attestation PDF, render, sign and render + sign, and the relevé of a
diploma holder (13 attestations), medians over N runs (ms).

    python -m bench.pdf_timing [--runs 30]

render = layout (reportlab) + QR (segno, fixed mask) + attached credential (pyHanko);
sign = PAdES signature of an already rendered PDF; build = ``build_signed_pdf`` (what a worker
does: layout, attachment and signature in one incremental update).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from contracts.referential import load_certification
from services.attestations.pdf import PdfContent, PdfSigner, build_signed_pdf, render
from services.attestations.transcript import build_signed_transcript, gather

# The referential's own wording: the bench renders what a real attestation shows.
COMPETENCES = tuple(load_certification("RNCP40705").bloc("RNCP40705BC01").competences)  # type: ignore[union-attr]

CONTENT = PdfContent(
    attestation_id="q3Vx8Lr2TmWc5NbYp0Ks7A",
    holder_name="Léa Durand",
    kind="bloc",
    code="RNCP40705BC01",
    title="Gérer des relations avec les clients, les usagers et les adhérents",
    competences=COMPETENCES,
    certification_code="RNCP40705",
    certification_title="BAC PRO - Assistance à la gestion des organisations et de leurs activités",
    issuer_name="MINISTERE DE L'EDUCATION NATIONALE ET DE LA JEUNESSE",
    issued_on=date(2026, 7, 3),
    verify_url="http://127.0.0.1:8102/v/q3Vx8Lr2TmWc5NbYp0Ks7A",
)
# A realistic size for a VC-JOSE-COSE Open Badges credential (~2.5 kB).
JWS = "eyJhbGciOiJFZERTQSIsInR5cCI6InZjK2p3dCJ9." + "A" * 2400 + "." + "B" * 86


def releve_entries() -> list[tuple[PdfContent, str]]:
    """The diploma and its 12 blocs, as a full holder's relevé lists them."""
    cert = load_certification("RNCP40705")
    blocs = [
        dataclasses.replace(CONTENT, code=b.code, title=b.title, competences=())
        for b in cert.mandatory_blocs
    ]
    diploma = dataclasses.replace(
        CONTENT, kind="certification", code=cert.code, title=cert.title, mention="Bien"
    )
    return [(c, JWS) for c in [diploma, *blocs]]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        signer = PdfSigner.load_or_create(Path(tmp) / "keys")
        unsigned = render(CONTENT, JWS)
        signed = build_signed_pdf(CONTENT, JWS, signer)  # warm-up (imports, caches)
        signer.sign(unsigned)
        releve = gather(
            releve_entries(),
            holder_name=CONTENT.holder_name,
            certification_code=CONTENT.certification_code,
            certification_title=CONTENT.certification_title,
            issuer_name=CONTENT.issuer_name,
            produced_on=date(2026, 12, 3),
        )
        build_signed_transcript(releve, signer)  # warm-up
        results = {
            "render": median_ms(lambda: render(CONTENT, JWS), args.runs),
            "sign": median_ms(lambda: signer.sign(unsigned), args.runs),
            "render+sign (build_signed_pdf)": median_ms(
                lambda: build_signed_pdf(CONTENT, JWS, signer), args.runs
            ),
            "relevé, 13 lines, signed": median_ms(
                lambda: build_signed_transcript(releve, signer), args.runs
            ),
        }
    print(f"attestation PDF, {len(COMPETENCES)} competences, {len(signed):,} bytes signed")
    print(f"medians over {args.runs} runs:")
    for name, value in results.items():
        print(f"  {name:32s} {value:7.2f} ms")


if __name__ == "__main__":
    main()
