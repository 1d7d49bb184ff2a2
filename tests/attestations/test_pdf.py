"""The attestation PDF: layout and text, PAdES signature, attached credential, QR code, keys."""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
from datetime import date
from io import BytesIO
from pathlib import Path

import pypdf
import pypdfium2
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyhanko.keys import load_certs_from_pemder_data
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from reportlab.pdfgen.canvas import Canvas

from services.attestations.pdf import (
    ATTACHMENT_MIME_TYPE,
    ATTACHMENT_NAME,
    CacheCipher,
    PdfContent,
    PdfSigner,
    build_signed_pdf,
    cached_pdf,
    embedded_credential,
    french_date,
    render,
)

ATTESTATION_ID = "Xq3Vx8Lr2TmWc5NbYp0Ks7"
VERIFY_URL = f"http://127.0.0.1:8102/v/{ATTESTATION_ID}"

COMPETENCES = (
    "Identifier les caractéristiques de la demande",
    "Apporter une réponse adaptée à la demande",
    "Produire, dans un environnement numérique, des supports de communication adaptés",
    "Assurer le suivi administratif des opérations de promotion et de prospection",
    "Appliquer les procédures internes de traitement des relations « clients »",
    "Produire les documents liés au traitement des relations « clients » dans un environnement "
    "numérique",
    "Assurer le suivi des enregistrements des factures de vente et des encaissements à l'aide "
    "d'un progiciel dédié ou d'un PGI",
    "Assurer le suivi des relances clients",
    "Mettre à jour l'information",
    "Rendre compte des anomalies repérées lors de l'actualisation du système d'information",
    "Identifier et appliquer les moyens de protection et de sécurisation adaptés aux données "
    "enregistrées ou extraites",
    "Assurer la visibilité numérique de l'organisation (au travers des réseaux sociaux, du site "
    "internet, de blogs)",
)

CONTENT = PdfContent(
    attestation_id=ATTESTATION_ID,
    holder_name="Léa Durand",
    kind="bloc",
    code="RNCP40705BC01",
    title="Gérer des relations avec les clients, les usagers et les adhérents",
    competences=COMPETENCES,
    certification_code="RNCP40705",
    certification_title="BAC PRO - Assistance à la gestion des organisations et de leurs activités",
    issuer_name="MINISTERE DE L'EDUCATION NATIONALE ET DE LA JEUNESSE",
    issued_on=date(2026, 7, 3),
    verify_url=VERIFY_URL,
)

A4 = (595.2756, 841.8898)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jws() -> str:
    """A real EdDSA compact JWS shaped like the service's credentials."""
    header = {"alg": "EdDSA", "typ": "vc+jwt", "cty": "vc", "kid": "key-1"}
    payload = {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "id": f"urn:uuid:{ATTESTATION_ID}",
        "credentialSubject": {"name": "Léa Durand"},
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = Ed25519PrivateKey.generate().sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


JWS = _jws()


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> PdfSigner:
    return PdfSigner.load_or_create(tmp_path_factory.mktemp("pdf") / "keys")


@pytest.fixture(scope="module")
def signed(signer: PdfSigner) -> bytes:
    return build_signed_pdf(CONTENT, JWS, signer)


def _text(pdf: bytes) -> list[str]:
    """Each page's text, whitespace (line breaks of wrapped lines, no-break spaces) as one space."""
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(BytesIO(pdf)).pages]


def _validate(pdf: bytes, signer: PdfSigner) -> tuple[EmbeddedPdfSignature, PdfSignatureStatus]:
    cert = next(iter(load_certs_from_pemder_data(signer.certificate_pem)))
    sig = PdfFileReader(BytesIO(pdf)).embedded_signatures[0]
    return sig, validate_pdf_signature(sig, ValidationContext(trust_roots=[cert]))


def test_signed_pdf_is_a4_french_and_readable(signed: bytes) -> None:
    assert signed.startswith(b"%PDF-")
    reader = pypdf.PdfReader(BytesIO(signed))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx(A4, abs=0.01)
    text = _text(signed)[0]
    for expected in (
        "Attestation de bloc de compétences",
        "Léa Durand",
        "RNCP40705BC01",
        "Gérer des relations avec les clients, les usagers et les adhérents",
        "RNCP40705",
        "BAC PRO - Assistance à la gestion des organisations",
        "MINISTERE DE L'EDUCATION NATIONALE ET DE LA JEUNESSE",
        "3 juillet 2026",
        VERIFY_URL,
        "Identifier les caractéristiques de la demande",
        "Assurer le suivi des relances clients",
        "relations « clients »",
        "Comment vérifier",
        "l’attestation",  # typographic apostrophe, from WinAnsi
    ):
        assert expected in text, expected
    assert reader.metadata is not None and reader.metadata.title is not None
    assert "RNCP40705BC01" in reader.metadata.title


def test_pades_signature_validates_against_the_signers_certificate(
    signed: bytes, signer: PdfSigner
) -> None:
    sig, status = _validate(signed, signer)
    assert sig.field_name == "Signature1"
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert status.docmdp_ok
    assert "compétences" in str(sig.sig_object["/Reason"])


def test_embedded_credential_is_the_jws_given(signed: bytes) -> None:
    assert embedded_credential(signed) == JWS
    catalog = PdfFileReader(BytesIO(signed)).root
    spec = catalog["/Names"]["/EmbeddedFiles"]["/Names"][1]
    assert spec["/UF"] == ATTACHMENT_NAME
    assert spec["/EF"]["/F"]["/Subtype"] == "/" + ATTACHMENT_MIME_TYPE
    assert catalog["/AF"][0]["/UF"] == ATTACHMENT_NAME  # PDF 2.0 associated file


def test_embedded_credential_is_none_without_one() -> None:
    out = BytesIO()
    canvas = Canvas(out)
    canvas.drawString(72, 720, "Rien en pièce jointe")
    canvas.save()
    assert embedded_credential(out.getvalue()) is None
    assert embedded_credential(b"not a pdf at all") is None
    assert embedded_credential(b"%PDF-1.7 nothing") is None
    assert embedded_credential(b"") is None


def test_tampering_one_signed_byte_breaks_integrity(signed: bytes, signer: PdfSigner) -> None:
    sig, _ = _validate(signed, signer)
    first_range_end = sig.byte_range[1]
    offset = signed.index(b"(certibloc)")  # /Creator in the Info dictionary, in the signed range
    assert offset < first_range_end
    tampered = bytearray(signed)
    tampered[offset + 1] = ord("C")
    _, status = _validate(bytes(tampered), signer)
    assert not status.intact
    assert not status.bottom_line


def test_render_then_sign_gives_the_same_guarantees(signer: PdfSigner) -> None:
    unsigned = render(CONTENT, JWS)
    assert embedded_credential(unsigned) == JWS
    assert not PdfFileReader(BytesIO(unsigned)).embedded_signatures
    signed = signer.sign(unsigned)
    _, status = _validate(signed, signer)
    assert status.intact and status.valid and status.trusted
    assert embedded_credential(signed) == JWS


def test_qr_code_decodes_to_the_verify_url(signed: bytes) -> None:
    document = pypdfium2.PdfDocument(signed)
    try:
        image = document[0].render(scale=150 / 72).to_pil()
    finally:
        document.close()
    decoded = [r.text for r in zxingcpp.read_barcodes(image) if r.format.name == "QRCode"]
    assert decoded == [VERIFY_URL]


def test_long_lists_go_on_to_a_second_page_and_special_characters_render(
    signer: PdfSigner,
) -> None:
    extra = (
        "Mettre en œuvre l’accueil des usagers «\u00a0prioritaires\u00a0»",
        "Contrôler la cohérence des données\u202f; signaler les écarts",  # narrow nbsp
    )
    content = dataclasses.replace(CONTENT, competences=COMPETENCES * 3 + extra)
    pdf = build_signed_pdf(content, JWS, signer)
    pages = _text(pdf)
    assert len(pages) == 2
    assert "page 1 / 2" in pages[0] and "page 2 / 2" in pages[1]
    assert VERIFY_URL in pages[0]
    assert "Mettre en œuvre l’accueil des usagers" in pages[1]
    assert "prioritaires" in pages[1] and "«" in pages[1] and "»" in pages[1]
    assert "Contrôler la cohérence des données" in pages[1]
    assert "3 juillet 2026" in pages[1]
    _, status = _validate(pdf, signer)
    assert status.intact and status.valid


def test_certification_attestation() -> None:
    content = dataclasses.replace(
        CONTENT,
        kind="certification",
        code="RNCP40705",
        title=CONTENT.certification_title,
        competences=COMPETENCES[:3],
        issued_on=date(2026, 8, 1),
    )
    text = _text(render(content, JWS))[0]
    assert "Attestation de certification" in text
    assert "a obtenu la certification professionnelle" in text
    assert "1er août 2026" in text


def test_render_refuses_what_is_not_a_compact_jws() -> None:
    with pytest.raises(ValueError, match="compact JWS"):
        render(CONTENT, "not-a-jws")


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 7, 3), "3 juillet 2026"),
        (date(2026, 8, 1), "1er août 2026"),
        (date(2027, 2, 28), "28 février 2027"),
        (date(2026, 12, 31), "31 décembre 2026"),
    ],
)
def test_french_date(day: date, expected: str) -> None:
    assert french_date(day) == expected


def test_signer_is_created_once_then_reused(tmp_path: Path) -> None:
    directory = tmp_path / "secrets" / "pdf"
    first = PdfSigner.load_or_create(directory)
    second = PdfSigner.load_or_create(directory)
    assert first.certificate_pem == second.certificate_pem
    assert first.certificate_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert b"PRIVATE KEY" not in first.certificate_pem
    other = PdfSigner.load_or_create(tmp_path / "elsewhere", common_name="autre")
    assert other.certificate_pem != first.certificate_pem


def test_the_pdf_cache_is_encrypted_and_rebuilt_when_unreadable(tmp_path: Path) -> None:
    cipher = CacheCipher(b"k" * 32)
    path = tmp_path / "pdf" / "AAAAAAAAAAAAAAAAAAAAAA.pdf"
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"%PDF-1.7 Zephyrine Quatrebarbe"

    assert cached_pdf(path, build, cipher) == b"%PDF-1.7 Zephyrine Quatrebarbe"
    stored = path.read_bytes()
    assert stored.startswith(CacheCipher.MAGIC) and b"Quatrebarbe" not in stored
    assert cached_pdf(path, build, cipher) == b"%PDF-1.7 Zephyrine Quatrebarbe"
    assert len(builds) == 1  # read back, not rebuilt
    # Renamed to another attestation's id, written in clear (before 2026-12), or under
    # another key: not trusted, built again.
    other = path.with_name("BBBBBBBBBBBBBBBBBBBBBB.pdf")
    other.write_bytes(stored)
    assert cached_pdf(other, build, cipher) == b"%PDF-1.7 Zephyrine Quatrebarbe"
    path.write_bytes(b"%PDF-1.7 in clear")
    assert cached_pdf(path, build, cipher) == b"%PDF-1.7 Zephyrine Quatrebarbe"
    assert cached_pdf(path, build, CacheCipher(b"x" * 32)).startswith(b"%PDF")
    assert len(builds) == 4
