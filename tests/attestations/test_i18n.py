"""The verification page and the PDF in English on request (``?lang=en``, Accept-Language),
French by default, over real HTTP; the referential's English where it has one."""

from __future__ import annotations

import re
from io import BytesIO

import httpx
import pypdf

from tests.attestations.harness import Attestations
from tests.attestations.test_keys_pdf_cli import _issue
from tests.attestations.test_service import attestations_of
from tests.registry.harness import Registry


def _text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(BytesIO(pdf))
    return " ".join(" ".join(p.extract_text().split()) for p in reader.pages)


async def test_page_and_pdf_in_english_on_request_french_by_default(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "L1", "RNCP40705BC01")
        (issued,) = await attestations_of(http, att, registry, "L1", 1)
        page_url = f"/v/{issued['id']}"

        french = await http.get(page_url)
        assert french.status_code == 200
        assert french.headers["content-language"] == "fr"
        assert "Accept-Language" in french.headers["vary"] and "Accept" in french.headers["vary"]
        assert '<html lang="fr">' in french.text
        assert "Attestation valide" in french.text and "Compétences attestées" in french.text
        assert "Valid attestation" not in french.text

        # The language switch: plain links, each language in itself, the current one marked.
        switch = re.search(
            r'<nav class="langues" aria-label="Langue">(.*?)</nav>', french.text, re.S
        )
        assert switch is not None
        assert f'href="{page_url}?lang=en" lang="en" hreflang="en">English</a>' in switch.group(1)
        assert (
            f'href="{page_url}?lang=fr" lang="fr" hreflang="fr" aria-current="true">Français</a>'
            in switch.group(1)
        )

        for english in (
            await http.get(page_url, params={"lang": "en"}),
            await http.get(page_url, headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"}),
        ):
            assert english.status_code == 200
            assert english.headers["content-language"] == "en"
            assert '<html lang="en">' in english.text
            html = english.text
            assert "Valid attestation" in html and "Competences attested" in html
            assert "Jury&#39;s decision" in html or "Jury's decision" in html
            assert re.search(
                r"\d{1,2} (January|February|March|April|May|June|July|August|"
                r"September|October|November|December) \d{4}",
                html,
            )
            assert "Attestation valide" not in html
            # RNCP40705 has no English: its titles and competences stay French.
            assert "Gérer des relations avec les clients" in html
            assert 'aria-current="true">English</a>' in html
        # ?lang= beats the header.
        forced = await http.get(page_url, params={"lang": "fr"}, headers={"Accept-Language": "en"})
        assert forced.headers["content-language"] == "fr"

        unknown = await http.get("/v/unknownid", params={"lang": "en"})
        assert unknown.status_code == 404 and "Unknown attestation" in unknown.text
        assert unknown.headers["content-language"] == "en"

        # The JSON answer stays French (what the signed credential says).
        body = (
            await http.get(
                page_url, headers={"Accept": "application/json", "Accept-Language": "en"}
            )
        ).json()
        assert body["achievement"]["title"].startswith("Gérer")

        # The PDF: English on request, cached per language, /Lang set.
        pdf_url = f"/v1/attestations/{issued['id']}/pdf"
        fr_pdf = await http.get(pdf_url, headers=registry.auth())
        en_pdf = await http.get(pdf_url, params={"lang": "en"}, headers=registry.auth())
        by_header = await http.get(pdf_url, headers={**registry.auth(), "Accept-Language": "en"})
        assert fr_pdf.status_code == en_pdf.status_code == 200
        assert en_pdf.headers["content-language"] == "en"
        fr_text, en_text = _text(fr_pdf.content), _text(en_pdf.content)
        assert (
            "Attestation de bloc de compétences" in fr_text
            and "Vérifier cette attestation" in fr_text
        )
        assert "Attestation of a block of competences" in en_text
        assert "Verify this attestation" in en_text and "How to verify?" in en_text
        assert "Vérifier cette attestation" not in en_text
        assert by_header.content == en_pdf.content  # the cached English one
        assert (await http.get(pdf_url, headers=registry.auth())).content == fr_pdf.content
        cache = att.var / "pdf"
        assert (cache / f"{issued['id']}.pdf").exists() and (
            cache / f"{issued['id']}.en.pdf"
        ).exists()
        langs = {
            pypdf.PdfReader(BytesIO(d)).trailer["/Root"].get("/Lang")
            for d in (fr_pdf.content, en_pdf.content)
        }
        assert langs == {"fr-FR", "en"}
