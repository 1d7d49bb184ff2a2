"""From the e-mail to a share link and back, in a real browser, on the whole system as
``make run`` starts it: a candidate registered (in French or in English), a PV posted, the
e-mail the notifications service sent opens their personal space; there they download the
relevé, share two attestations (the QR code shown decodes to the link), an employer opens
the link, the candidate sees it was opened and withdraws it, and the employer's next visit is
refused. JavaScript off, as the pages need none."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, Page
from pyhanko.pdf_utils.reader import PdfFileReader

from tests.browser.test_pages import assert_accessible, opened
from tests.registry.harness import candidate, full_lines, pv
from tests.support.browser import submit_form
from tests.support.processes import eventually
from tests.support.system import System

BLOCS = ["RNCP40705BC01", "RNCP40705BC02", "RNCP40705BC03"]
WORDS = {
    "fr": {
        "releve": "Télécharger le relevé de toutes mes attestations en vigueur (PDF signé)",
        "week": "7 jours",
        "create": "Créer le lien de partage",
        "created": "Lien créé",
        "once": "Ouvert 1 fois",
        "revoke": "Retirer ce lien",
        "withdrawn": "Retiré le",
        "not_validity": "pas celle de la validité des attestations",
        "wallet": "Mettre dans mon portefeuille numérique",
    },
    "en": {
        "releve": "Download the statement of all my attestations in force (signed PDF)",
        "week": "7 days",
        "create": "Create the share link",
        "created": "Link created",
        "once": "Opened once",
        "revoke": "Withdraw this link",
        "withdrawn": "Withdrawn on",
        "not_validity": "not the end of the attestations’ validity",
        "wallet": "Add to my digital wallet",
    },
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("flow") / "system") as running:
        auth = running.auth
        with httpx.Client(timeout=30) as http:
            for number, lang in (("FLOWFR", "fr"), ("FLOWEN", "en")):
                body = candidate(number, email=f"{number.lower()}@example.org")
                got = http.post(
                    f"{running.url('registry')}/v1/candidates",
                    json={**body, "preferred_language": lang},
                    headers=auth,
                )
                assert got.status_code == 201, got.text
            lines = [
                line
                for number in ("FLOWFR", "FLOWEN")
                for line in full_lines(number, "14")
                if line["bloc"] in BLOCS
            ]
            posted = http.post(
                f"{running.url('registry')}/v1/deliberations", json=pv(lines), headers=auth
            )
            assert posted.status_code == 201, posted.text
        yield running


def space_link_in_mail(mail_dir: Path, to: str) -> str | None:
    """The personal-space link of the e-mail sent to ``to``, as the candidate would click it."""
    for path in sorted(mail_dir.glob("*.eml")):
        message: Any = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if to not in str(message["To"]):
            continue
        html = message.get_body(preferencelist=("html",)).get_content()
        found = re.search(r'href="([^"]*/space\?token=[^"]+)"', html)
        if found:
            return found.group(1).replace("&amp;", "&")
    return None


async def qr_text(page: Page, selector: str) -> str:
    shot = await page.locator(selector).screenshot()
    found = zxingcpp.read_barcodes(Image.open(BytesIO(shot)))
    assert len(found) == 1, f"{len(found)} QR codes in {selector}"
    return str(found[0].text)


async def accessible_at(browser: Browser, url: str, what: str, status: int = 200) -> None:
    """axe-core over the page at ``url``: it needs JavaScript, which this flow runs without,
    so in a context of its own (the page is the same: it has no script)."""
    async with opened(browser, locale="fr-FR") as (_, page):
        response = await page.goto(url)
        assert response is not None and response.status == status
        await assert_accessible(page, what)


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_from_the_email_to_a_share_link_and_its_withdrawal(
    browser: Browser, system: System, screenshots: Path, lang: str
) -> None:
    words = WORDS[lang]
    number = {"fr": "FLOWFR", "en": "FLOWEN"}[lang]
    link = await eventually(
        lambda: space_link_in_mail(system.mail_dir, f"{number.lower()}@"), 60, "the e-mail"
    )
    assert link.startswith(system.url("attestations")), link

    # A French browser, for both: the English candidate's link says lang=en, which wins.
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "locale": "fr-FR"}
    async with opened(browser, java_script_enabled=False, accept_downloads=True, **phone) as (
        _,
        page,
    ):
        response = await page.goto(link)
        assert response is not None and response.status == 200
        assert await page.evaluate("document.documentElement.lang") == lang  # theirs
        # The relevé: one signed PDF of what they hold.
        async with page.expect_download(timeout=30_000) as download:
            await page.get_by_role("link", name=words["releve"]).click()
        saved = await (await download.value).path()
        releve = await asyncio.to_thread(saved.read_bytes)
        assert releve.startswith(b"%PDF-")
        assert len(PdfFileReader(BytesIO(releve)).embedded_signatures) == 1

        # Two of the three attestations, for a week.
        boxes = page.locator("form.partage input[name=attestation]")
        assert await boxes.count() == len(BLOCS)
        await boxes.nth(0).check()
        await boxes.nth(2).check()
        await page.get_by_label(words["week"], exact=True).check()
        answer = await submit_form(page, words["create"])
        assert answer is not None and answer.status == 200
        assert words["created"] in await page.locator("main").inner_text()
        await page.screenshot(path=screenshots / f"space-shared-{lang}.png", full_page=True)
        await accessible_at(browser, page.url, f"space with a share link ({lang})")
        share_url = await page.locator("p.adresse input").input_value()
        assert re.fullmatch(rf"{system.url('attestations')}/s/[A-Za-z0-9_-]{{43}}", share_url)
        assert await qr_text(page, "figure.qr svg") == share_url  # the phone scans the link
        chosen = [await boxes.nth(i).get_attribute("value") for i in (0, 2)]

        # The employer, in a (French) browser of their own.
        async with opened(browser, java_script_enabled=False, locale="fr-FR") as (_, employer):
            shown = await employer.goto(share_url)
            assert shown is not None and shown.status == 200
            text = await employer.locator("main").inner_text()
            assert WORDS["fr"]["not_validity"] in text
            ids = await employer.locator("li.attestation").evaluate_all(
                "items => items.map(i => i.id)"
            )
            assert ids == chosen
            await employer.screenshot(path=screenshots / f"share-{lang}.png", full_page=True)
            await accessible_at(browser, share_url, "share page")

            # The candidate sees it was opened, and withdraws it.
            await page.reload()
            assert words["once"] in await page.locator("main").inner_text()
            answer = await submit_form(page, words["revoke"], within="li.lien-partage", exact=False)
            assert answer is not None and answer.status == 200
            assert words["withdrawn"] in await page.locator("li.lien-partage").inner_text()
            assert await page.locator("p.adresse").count() == 0

            gone = await employer.reload()
            assert gone is not None and gone.status == 410
            await employer.screenshot(path=screenshots / f"share-gone-{lang}.png", full_page=True)
            await accessible_at(browser, share_url, "withdrawn share link", status=410)


async def test_the_wallet_offer_qr_code_is_the_offer_a_wallet_redeems(
    browser: Browser, system: System, screenshots: Path
) -> None:
    """Scanning the offer from the space: the QR code decodes to the very
    openid-credential-offer:// link the page gives (the one test_oid4vci_node.py's wallet
    library redeems), with the transaction code shown beside it, not in it."""
    link = await eventually(
        lambda: space_link_in_mail(system.mail_dir, "flowfr@"), 60, "the e-mail"
    )
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "locale": "fr-FR"}
    async with opened(browser, java_script_enabled=False, **phone) as (_, page):
        await page.goto(link)
        answer = await submit_form(
            page, WORDS["fr"]["wallet"], within="li.attestation.valide >> nth=0", exact=False
        )
        assert answer is not None and answer.status == 200
        await page.screenshot(path=screenshots / "wallet-offer-flow-fr.png", full_page=True)
        offer = await page.locator('a[href^="openid-credential-offer://"]').get_attribute("href")
        assert offer is not None
        assert await qr_text(page, "figure.qr svg") == offer
        tx_code = (await page.locator("p.code-transaction strong").inner_text()).strip()
        assert tx_code.isdigit() and tx_code not in offer
