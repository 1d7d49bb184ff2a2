"""The public pages in a real browser (headless Chromium): each page of PAGES in French and in
English, on a phone (390 px) and a desktop (1280 px), served by the real attestations service
with its real headers (CSP included): the language it says, axe-core finds no serious or
critical violation, nothing scrolls sideways on the phone, and a full-page screenshot
(``$CERTIBLOC_SCREENSHOTS/<page>-<lang>-<width>.png``) to look at. Also: every page renders with
JavaScript off, and the personal space printed has no violation either."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.errors import NotFoundError
from playwright.async_api import Browser, BrowserContext, Page

from services.attestations.shares import ShareLinks
from services.runtime import tokens
from services.runtime.provision import provision
from tests.attestations.harness import Attestations, serve_both
from tests.attestations.test_service import attestations_of, until
from tests.registry.harness import CENTER_A, Registry, candidate, full_lines, pv
from tests.support.browser import axe_violations, describe, submit_form
from tests.support.processes import NatsServer

PHONE, DESKTOP = 390, 1280
HOLDER = "W1"
VALID_BLOC, REVOKED_BLOC = "RNCP40705BC01", "RNCP40705BC02"


@dataclass
class Site:
    """The running service and what it holds: one bloc attestation in force, one revoked (by a
    correction), the holder's personal space token."""

    registry: Registry
    att: Attestations
    valid_id: str
    revoked_id: str
    space_token: str
    share_token: str
    withdrawn_share_token: str


@dataclass(frozen=True)
class PageCase:
    name: str
    path: Callable[[Site], str]
    status: int = 200


# Every page a person opens. A new page is one entry here: it is then checked in both languages,
# at both widths, with JavaScript off.
PAGES = [
    PageCase("verification", lambda s: f"/v/{s.valid_id}"),
    PageCase("revoked", lambda s: f"/v/{s.revoked_id}"),
    PageCase("unknown", lambda s: f"/v/{'A' * 22}", status=404),
    PageCase("space", lambda s: f"/space?token={s.space_token}"),
    PageCase("share", lambda s: f"/s/{s.share_token}"),
    PageCase("share-withdrawn", lambda s: f"/s/{s.withdrawn_share_token}", status=410),
]

LANGS = [pytest.param("fr", id="fr"), pytest.param("en", id="en")]
PAGE_PARAMS = [pytest.param(p, id=p.name) for p in PAGES]


def url_of(site: Site, case: PageCase, lang: str) -> str:
    path = case.path(site)
    if lang != "fr":  # French is the default: no parameter
        path += ("&" if "?" in path else "?") + f"lang={lang}"
    return site.att.url + path


@pytest.fixture(scope="module")
async def site(
    tmp_path_factory: pytest.TempPathFactory, nats_server: NatsServer
) -> AsyncIterator[Site]:
    # The services' fixed stream names, empty as at a first start (as clean_streams does).
    nc = await nats_server.connect()
    js = nc.jetstream()
    for info in await js.streams_info():
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(info.config.name)
    await provision(js)
    await nc.close()
    with serve_both(tmp_path_factory.mktemp("browser-site"), nats_server.url) as (registry, att):
        auth = registry.auth()
        async with httpx.AsyncClient(timeout=30) as http:
            got = await http.post(
                f"{registry.url}/v1/candidates",
                json=candidate(HOLDER, given_names=["Léa", "Marie"], usage_name="Martin"),
                headers=auth,
            )
            assert got.status_code == 201, got.text
            lines = [x for x in full_lines(HOLDER, "14") if x["bloc"] in (VALID_BLOC, REVOKED_BLOC)]
            created = await http.post(
                f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth
            )
            assert created.status_code == 201, created.text
            held = {a["code"]: a for a in await attestations_of(http, att, registry, HOLDER, 2)}
            correction = await http.post(
                f"{registry.url}/v1/corrections",
                headers=auth,
                json={
                    "deliberation_id": created.json()["deliberation_id"],
                    "candidate_number": HOLDER,
                    "bloc": REVOKED_BLOC,
                    "grade": "3",
                    "reason": "Erreur de report de note",
                },
            )
            assert correction.status_code == 201, correction.text
            revoked_url = held[REVOKED_BLOC]["verify_url"]

            async def revoked() -> bool:
                r = await http.get(revoked_url, headers={"Accept": "application/json"})
                return bool(r.json()["status"] == "revoked")

            await until(revoked)
        subject = tokens.holder_subject(CENTER_A, HOLDER)
        holder = att.app.holder(CENTER_A, HOLDER)
        assert holder is not None
        links = ShareLinks(att.app)
        # A share link in force and one the candidate withdrew.
        shared = links.create(holder, [held[VALID_BLOC]["id"]], "30d")
        withdrawn = links.create(holder, [held[VALID_BLOC]["id"]], "7d")
        links.revoke(holder, str(withdrawn.id))
        yield Site(
            registry,
            att,
            valid_id=held[VALID_BLOC]["id"],
            revoked_id=held[REVOKED_BLOC]["id"],
            space_token=tokens.mint(att.download_secret, subject, None, 0, ttl_seconds=3600),
            share_token=shared.token,
            withdrawn_share_token=withdrawn.token,
        )


@contextlib.asynccontextmanager
async def opened(browser: Browser, **options: Any) -> AsyncIterator[tuple[BrowserContext, Page]]:
    # A French browser (Accept-Language fr-FR) unless told otherwise: the pages' default
    # audience; English is asked for with ?lang=en, which wins over the header.
    context = await browser.new_context(**{"locale": "fr-FR", **options})
    try:
        yield context, await context.new_page()
    finally:
        await context.close()


async def load(page: Page, url: str, status: int) -> None:
    response = await page.goto(url, wait_until="load")
    assert response is not None and response.status == status, (url, response)


async def assert_accessible(page: Page, what: str) -> None:
    found = await axe_violations(page)
    assert not found, f"axe-core: serious or critical violations on {what}:\n{describe(found)}"


@pytest.mark.parametrize("width", [PHONE, DESKTOP], ids=lambda w: f"{w}px")
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("case", PAGE_PARAMS)
async def test_page_in_a_browser(
    browser: Browser, site: Site, screenshots: Path, case: PageCase, lang: str, width: int
) -> None:
    url = url_of(site, case, lang)
    async with opened(browser, viewport={"width": width, "height": 800}) as (_, page):
        await load(page, url, case.status)
        shot = screenshots / f"{case.name}-{lang}-{width}.png"
        await page.screenshot(path=shot, full_page=True)
        assert await page.evaluate("document.documentElement.lang") == lang
        await assert_accessible(page, f"{case.name} ({lang}, {width} px)")
        if width == PHONE:
            scroll, inner = await page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert scroll <= inner, (
                f"{case.name} scrolls sideways at {width} px: {scroll} > {inner}"
            )


@pytest.mark.parametrize("case", PAGE_PARAMS)
async def test_page_renders_without_javascript(
    browser: Browser, site: Site, case: PageCase
) -> None:
    async with opened(browser, java_script_enabled=False) as (_, page):
        await load(page, url_of(site, case, "fr"), case.status)
        heading = page.locator("main h1, main strong").first
        assert (await heading.inner_text()).strip()
        assert await page.locator("link[rel=stylesheet]").count() == 1


async def test_the_space_printed_has_no_violation(
    browser: Browser, site: Site, screenshots: Path
) -> None:
    space = next(p for p in PAGES if p.name == "space")
    async with opened(browser, viewport={"width": 794, "height": 1123}) as (_, page):
        await page.emulate_media(media="print")
        await load(page, url_of(site, space, "fr"), 200)
        await page.screenshot(path=screenshots / "space-fr-print.png", full_page=True)
        assert await page.evaluate("matchMedia('print').matches")
        await assert_accessible(page, "space (print)")


async def test_submit_form_clicks_the_button_and_follows_the_answer(browser: Browser) -> None:
    """The helper the space's forms (create a share link, revoke it) are tested with; here on
    pages served by the test itself, with JavaScript off as with it on."""
    origin = f"http://forms-{secrets.token_hex(4)}.test"
    posted: list[str] = []

    async def serve(route: Any) -> None:
        request = route.request
        if request.method == "POST":  # (no redirect: Chromium would resolve the made-up host)
            posted.append(f"{request.url} {request.post_data}")
            await route.fulfill(content_type="text/html; charset=utf-8", body="<h1>Fait</h1>")
        else:
            await route.fulfill(
                content_type="text/html; charset=utf-8",
                body=(
                    '<form method="post" action="/other"><button>Autre</button></form>'
                    '<form id="f" method="post" action="/share">'
                    '<input type="hidden" name="attestation" value="x1">'
                    "<button>Créer un lien de partage</button></form>"
                ),
            )

    for javascript in (True, False):
        async with opened(browser, java_script_enabled=javascript) as (context, page):
            await context.route(f"{origin}/**", serve)
            await page.goto(f"{origin}/space")
            response = await submit_form(page, "Créer un lien de partage", within="#f")
            assert response is not None and response.url == f"{origin}/share"
            assert await page.locator("h1").inner_text() == "Fait"
    assert posted == [f"{origin}/share attestation=x1"] * 2


async def test_axe_runs_under_the_pages_csp_and_reports_what_it_finds(
    browser: Browser, site: Site
) -> None:
    """The check above is not vacuous: axe, injected the same way into a real page with its real
    CSP, reports a violation planted in it (text too pale, an image without alternative). The
    colour is set through the CSSOM: the CSP (style-src 'self') refuses a style attribute."""
    async with opened(browser) as (_, page):
        await load(page, url_of(site, PAGES[0], "fr"), 200)
        await page.evaluate(
            """() => { const p = document.createElement('p');
                p.textContent = 'illisible'; p.style.color = '#ccc';
                const img = document.createElement('img');
                document.querySelector('main').append(p, img); }"""
        )
        found = {v["id"]: v for v in await axe_violations(page)}
        assert {"color-contrast", "image-alt"} <= set(found), describe(list(found.values()))
        assert "#contenu > p: " in describe([found["color-contrast"]])  # the target node


@pytest.mark.parametrize("width", [PHONE, DESKTOP], ids=lambda w: f"{w}px")
@pytest.mark.parametrize("lang", LANGS)
async def test_the_wallet_offer_page_in_a_browser(
    browser: Browser, site: Site, screenshots: Path, lang: str, width: int
) -> None:
    """The page a POST from the space shows (not in PAGES: no GET reaches it): the candidate
    presses « Mettre dans mon portefeuille numérique » and gets the offer's QR code, its link
    and the transaction code, checked as the other pages are."""
    space = next(p for p in PAGES if p.name == "space")
    async with opened(browser, viewport={"width": width, "height": 800}) as (_, page):
        await load(page, url_of(site, space, lang), 200)
        async with page.expect_navigation() as navigation:
            await page.locator("form.portefeuille button").first.click()
        response = await navigation.value
        assert response is not None and response.status == 200
        assert response.url.startswith(f"{site.att.url}/space/wallet-offers")
        await page.screenshot(path=screenshots / f"wallet-offer-{lang}-{width}.png", full_page=True)
        assert await page.evaluate("document.documentElement.lang") == lang
        assert await page.locator("figure.qr svg[role=img]").count() == 1
        code = await page.locator(".code-transaction strong").inner_text()
        assert code.isdigit() and len(code) == 6
        link = await page.locator("a[href^='openid-credential-offer://']").count()
        assert link == 1
        await assert_accessible(page, f"wallet offer ({lang}, {width} px)")
        if width == PHONE:
            scroll, inner = await page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert scroll <= inner, f"the wallet offer scrolls sideways: {scroll} > {inner}"
