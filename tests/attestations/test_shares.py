"""Share links and the relevé, over real HTTP as a browser without JavaScript uses them:
forms posted from the personal space, the page behind a link, its revocation, its openings."""

from __future__ import annotations

import base64
import logging
import re
from datetime import UTC, datetime
from html import unescape
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pypdf
import pytest
from markupsafe import escape
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from services.attestations.domain.aggregates import Holder
from services.attestations.domain.sharing import (
    MAX_ACTIVE_LINKS,
    OPENING_WINDOW,
    TOKEN_BYTES,
    HolderShares,
    share_id,
)
from services.attestations.shares import ShareLinks
from services.runtime import tokens
from tests.attestations.harness import Attestations
from tests.attestations.test_keys_pdf_cli import _issue
from tests.attestations.test_service import attestations_of, until
from tests.registry.harness import CENTER_A, Registry, candidate, full_lines, pv

SHARE_URL = re.compile(r'value="(http://[^"]+/s/([A-Za-z0-9_-]+))"')


def space_token(att: Attestations, number: str, epoch: int = 0) -> str:
    return tokens.mint(
        att.download_secret, tokens.holder_subject(CENTER_A, number), None, epoch, 600
    )


async def create_share(
    http: httpx.AsyncClient, token: str, ids: list[str], duration: str = "7d"
) -> httpx.Response:
    form: dict[str, Any] = {"token": token, "duration": duration, "attestation": ids}
    return await http.post("/space/shares", data=form)


def share_links(html: str) -> list[tuple[str, str]]:
    """(url, token) of each active link the space shows."""
    return [(unescape(url), token) for url, token in SHARE_URL.findall(html)]


async def test_a_candidate_shares_chosen_attestations_until_they_revoke_the_link(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        for bloc in ("RNCP40705BC01", "RNCP40705BC02", "RNCP40705BC03"):
            await _issue(http, registry, "H1", bloc)
        await _issue(http, registry, "H2", "RNCP40705BC04")  # someone else
        held = {a["code"]: a for a in await attestations_of(http, att, registry, "H1", 3)}
        (theirs,) = await attestations_of(http, att, registry, "H2", 1)
        token = space_token(att, "H1")

        space = await http.get("/space", params={"token": token})
        assert "Partager mes attestations" in space.text and not share_links(space.text)
        chosen = [held["RNCP40705BC01"]["id"], held["RNCP40705BC03"]["id"]]
        made = await create_share(http, token, chosen)
        assert made.status_code == 303, made.text
        assert made.headers["location"].startswith("/space?")  # back to the space, by GET

        space = await http.get(made.headers["location"])
        assert space.status_code == 200
        assert "Lien créé" in space.text and "Pas encore ouvert" in space.text
        ((url, share),) = share_links(space.text)
        assert url == f"{att.url}/s/{share}"
        # 256 bits from the CSPRNG, base64url: unguessable.
        assert len(base64.urlsafe_b64decode(share + "=")) == TOKEN_BYTES >= 16
        assert '<svg role="img" aria-label="QR code du lien de partage"' in space.text

        # The page behind the link: exactly what was chosen, each verifiable, and what the
        # link's expiry means.
        page = await http.get(f"/s/{share}")
        assert page.status_code == 200, page.text
        assert page.headers["cache-control"] == "private, no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        html = page.text
        for code in ("RNCP40705BC01", "RNCP40705BC03"):
            assert str(escape(held[code]["title"])) in html
            assert held[code]["verify_url"] in html
        assert "RNCP40705BC02" not in html and theirs["id"] not in html
        assert "pas celle de la validité des attestations" in html
        assert "Ce lien de partage expire le" in html
        # Its files, for those attestations only.
        pdf = await http.get(f"/s/{share}/attestations/{chosen[0]}/pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        jws = await http.get(f"/s/{share}/attestations/{chosen[1]}/credential")
        assert jws.status_code == 200 and jws.text.count(".") == 2
        for other in (held["RNCP40705BC02"]["id"], theirs["id"]):
            assert (await http.get(f"/s/{share}/attestations/{other}/pdf")).status_code == 404

        # The candidate sees it was opened (once per window, however often it is loaded).
        await http.get(f"/s/{share}")
        space = await http.get("/space", params={"token": token})
        assert "Ouvert 1 fois" in space.text

        # Revoked from the space: at once, the page and its files are gone.
        link_id = re.findall(r'action="/space/shares/([0-9a-f-]{36})/revoke', space.text)[0]
        revoked = await http.post(f"/space/shares/{link_id}/revoke", data={"token": token})
        assert revoked.status_code == 303, revoked.text
        gone = await http.get(f"/s/{share}")
        assert gone.status_code == 410 and "retiré par son titulaire" in gone.text
        assert gone.headers["content-type"].startswith("text/html")
        assert (await http.get(f"/s/{share}/attestations/{chosen[0]}/pdf")).status_code == 404
        space = await http.get("/space", params={"token": token})
        assert not share_links(space.text) and "Retiré le" in space.text
        # Revoking twice changes nothing; someone else's space cannot revoke it.
        again = await http.post(f"/space/shares/{link_id}/revoke", data={"token": token})
        assert again.status_code == 303
        other_space = space_token(att, "H2")
        foreign = await http.post(f"/space/shares/{link_id}/revoke", data={"token": other_space})
        assert foreign.status_code == 403
        assert foreign.headers["content-type"] == "application/problem+json"


async def test_share_requests_that_cannot_be_honoured_change_nothing(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "H3", "RNCP40705BC01")
        await _issue(http, registry, "H4", "RNCP40705BC02")
        (mine,) = await attestations_of(http, att, registry, "H3", 1)
        (theirs,) = await attestations_of(http, att, registry, "H4", 1)
        token = space_token(att, "H3")

        # The candidate's own mistakes: the space again, saying what to fix, nothing made.
        for ids, duration, says in (
            ([], "7d", "au moins une attestation"),
            ([theirs["id"]], "7d", "vos propres attestations"),
            ([mine["id"], "x" * 22], "7d", "vos propres attestations"),
            ([mine["id"]], "forever", "durée"),
        ):
            refused = await create_share(http, token, ids, duration)
            assert refused.status_code == 422, (ids, duration, refused.text)
            assert refused.headers["content-type"].startswith("text/html")
            assert says in refused.text and 'role="alert"' in refused.text
        # What no form of ours sends: a problem, not a page.
        for form in (
            {"token": token, "attestation": ["y" * 33], "duration": "7d"},
            {"token": token, "attestation": [mine["id"]] * 65, "duration": "7d"},
            {"token": "t" * 1000, "attestation": [mine["id"]], "duration": "7d"},
        ):
            bad = await http.post("/space/shares", data=form)
            assert bad.status_code == 422, bad.text
            assert bad.headers["content-type"] == "application/problem+json"
        # Not their space: refused before anything is read.
        for wrong in (space_token(att, "H9"), token[:-3] + "AAA", ""):
            forbidden = await create_share(http, wrong, [mine["id"]])
            assert forbidden.status_code in (403, 422), forbidden.text
        space = await http.get("/space", params={"token": token})
        assert not share_links(space.text) and "Mes liens de partage" not in space.text

        # Unknown or malformed links: 404 (or 422 past the bound), never 5xx.
        for share in ("A" * 43, "A" * 42, "not-a-link", "A" * 44):
            got = await http.get(f"/s/{share}")
            assert got.status_code == 404, (share, got.text)
        assert (await http.get("/s/" + "A" * 45)).status_code == 422
        bad_id = await http.post("/space/shares/not-a-uuid/revoke", data={"token": token})
        assert bad_id.status_code == 403


async def test_share_links_end_with_the_personal_links_and_show_live_status(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    auth = registry.auth()
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await http.post(f"{registry.url}/v1/candidates", json=candidate("H5"), headers=auth)
        lines = [line for line in full_lines("H5", "14") if line["bloc"] != "RNCP40705BC12"]
        created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
        assert created.status_code == 201
        held = await attestations_of(http, att, registry, "H5", 11)
        bc01 = next(a for a in held if a["code"] == "RNCP40705BC01")
        token = space_token(att, "H5")
        made = await create_share(http, token, [bc01["id"]], "until_revoked")
        space = await http.get(made.headers["location"])
        ((_, share),) = share_links(space.text)
        page = await http.get(f"/s/{share}")
        assert "reste ouvert jusqu'à ce que son titulaire le retire" in page.text
        assert "Valide à ce jour" in page.text

        # A correction revokes BC01: the share page says so at once, and offers no file.
        correction = await http.post(
            f"{registry.url}/v1/corrections",
            headers=auth,
            json={
                "deliberation_id": created.json()["deliberation_id"],
                "candidate_number": "H5",
                "bloc": "RNCP40705BC01",
                "grade": "3",
                "reason": "Erreur de report de note",
            },
        )
        assert correction.status_code == 201

        async def shows_revoked() -> str | None:
            text = (await http.get(f"/s/{share}")).text
            return text if "Révoquée le" in text else None

        page_text = await until(shows_revoked)
        assert "Erreur de report de note" in page_text and "/pdf" not in page_text

        # The center revokes the candidate's personal links: the share links end with them.
        revoke = "/v1/candidates/H5/download-links/revoke"
        assert (await http.post(revoke, json={}, headers=auth)).status_code == 202
        gone = await http.get(f"/s/{share}")
        assert gone.status_code == 410
        renewed = space_token(att, "H5", epoch=1)
        space = await http.get("/space", params={"token": renewed})
        assert "vos liens personnels ont été renouvelés" in space.text


async def test_the_releve_gathers_what_is_in_force_signed(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        for bloc in ("RNCP40705BC02", "RNCP40705BC01"):
            await _issue(http, registry, "H6", bloc)
        held = await attestations_of(http, att, registry, "H6", 2)
        token = space_token(att, "H6")
        space = await http.get("/space", params={"token": token})
        releve_url = unescape(re.findall(r'href="(/space/releve\?[^"]+)"', space.text)[0])

        got = await http.get(releve_url)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/pdf"
        assert got.headers["cache-control"] == "private, no-store"
        assert (await http.get(releve_url)).content == got.content  # built once, then cached

        reader = pypdf.PdfReader(BytesIO(got.content))
        text = " ".join(" ".join(p.extract_text().split()) for p in reader.pages)
        assert "Relevé des attestations" in text
        # Each line links to its attestation's verification page (the URL wraps in its cell).
        annotations = [a.get_object() for page in reader.pages for a in page.get("/Annots", [])]
        uris = [a["/A"]["/URI"] for a in annotations if "/A" in a]  # not the signature's
        for a in held:
            assert a["code"] in text and a["verify_url"] in uris
        assert text.index("RNCP40705BC01") < text.index("RNCP40705BC02")
        attached = sorted(reader.attachments)
        assert attached == sorted(f"attestation-{a['code']}-{a['id']}.vc.jwt" for a in held)

        sig = PdfFileReader(BytesIO(got.content)).embedded_signatures[0]
        context = ValidationContext(trust_roots=[sig.signer_cert])
        status = await async_validate_pdf_signature(sig, context)
        assert status.intact and status.valid and status.docmdp_ok
        assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE

        # Not behind another's link, nor one attestation's.
        one = tokens.mint(
            att.download_secret, tokens.holder_subject(CENTER_A, "H6"), held[0]["id"], 0, 600
        )
        assert (await http.get("/space/releve", params={"token": one})).status_code == 403


async def test_a_link_opened_for_months_is_read_from_a_snapshot(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "H7", "RNCP40705BC01")
        (held,) = await attestations_of(http, att, registry, "H7", 1)
    now = [datetime.now(UTC)]
    links = ShareLinks(att.app, clock=lambda: now[0])
    holder = att.app.holder(CENTER_A, "H7")
    assert holder is not None
    link = links.create(holder, [held["id"]], "until_revoked")
    for _ in range(150):  # one opening per window, recorded each time
        now[0] += OPENING_WINDOW
        assert links.open(link.token) is not None
    assert att.app.snapshots is not None
    snapshots = list(att.app.snapshots.get(link.id))
    assert snapshots and snapshots[-1].originator_version == 100
    found = links.find(link.token)
    assert found is not None and found[0].openings == 150


async def test_the_space_the_share_page_and_the_releve_speak_english_on_request(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "H8", "RNCP40705BC01")
        (held,) = await attestations_of(http, att, registry, "H8", 1)
        token = space_token(att, "H8")
        space = await http.get("/space", params={"token": token, "lang": "en"})
        assert space.headers["content-language"] == "en"
        assert '<html lang="en">' in space.text and "Share my attestations" in space.text
        assert "Partager" not in space.text
        # The switch keeps the personal link; forms post back in the same language.
        assert f"token={token}" in unescape(space.text) and 'hreflang="fr"' in space.text
        made = await http.post(
            "/space/shares?lang=en",
            data={"token": token, "duration": "7d", "attestation": [held["id"]]},
        )
        assert made.status_code == 303 and "lang=en" in made.headers["location"]
        space = await http.get(made.headers["location"])
        assert "Link created" in space.text and "Not opened yet." in space.text
        ((_, share),) = share_links(space.text)
        refused = await http.post("/space/shares?lang=en", data={"token": token, "duration": "7d"})
        assert refused.status_code == 422 and "Choose at least one attestation" in refused.text

        page = await http.get(f"/s/{share}", headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert page.headers["content-language"] == "en"
        assert "not the end of the attestations’ validity" in page.text
        assert "This share link expires on" in page.text
        french = await http.get(f"/s/{share}")
        assert "pas celle de la validité des attestations" in french.text

        releve = await http.get("/space/releve", params={"token": token, "lang": "en"})
        reader = pypdf.PdfReader(BytesIO(releve.content))
        text = " ".join(reader.pages[0].extract_text().split())
        assert "Statement of attestations" in text and "How obtained" in text
        assert reader.trailer["/Root"]["/Lang"] == "en"


async def test_what_the_review_found_stays_fixed(
    services: tuple[Registry, Attestations], caplog: pytest.LogCaptureFixture
) -> None:
    """A share link's secret never reaches the logs; an id of another kind of record is a
    404, not a 500; a shared attestation revoked since offers no file; the space's file links
    open one attestation, not the space; a dead personal link gets a page, not JSON; at most
    MAX_ACTIVE_LINKS links in force, and withdrawing one makes room."""
    registry, att = services
    caplog.set_level(logging.INFO)
    auth = registry.auth()
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await http.post(f"{registry.url}/v1/candidates", json=candidate("H9"), headers=auth)
        lines = [
            x for x in full_lines("H9", "14") if x["bloc"] in ("RNCP40705BC01", "RNCP40705BC02")
        ]
        created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
        held = {a["code"]: a for a in await attestations_of(http, att, registry, "H9", 2)}
        token = space_token(att, "H9")
        made = await create_share(http, token, [a["id"] for a in held.values()])
        space = await http.get(made.headers["location"])
        ((_, share),) = share_links(space.text)
        assert (await http.get(f"/s/{share}")).status_code == 200
        assert (await http.get(f"/s/{share}x")).status_code == 404  # unmatched, mistyped
        # The service's own log lines (uvicorn's access log is off in production, cli.py;
        # httpx logs what this test sent).
        logged = " ".join(
            f"{r.getMessage()} {r.__dict__}"
            for r in caplog.records
            if r.name.startswith("certibloc")
        )
        assert "/s/{token}" in logged and share not in logged and share[:-1] not in logged

        # Ids anyone can compute, of records that are not attestations.
        for aggregate_id in (
            HolderShares.create_id(CENTER_A, "H9"),
            Holder.create_id(CENTER_A, "H9"),
            share_id(share),
        ):
            public = base64.urlsafe_b64encode(aggregate_id.bytes).rstrip(b"=").decode()
            for path in (f"/v/{public}", f"/v1/attestations/{public}/pdf"):
                got = await http.get(path, params={"token": token}, headers=auth)
                assert got.status_code == 404, (path, got.status_code, got.text)

        # The space's file links carry a token for one attestation, which opens no space.
        pdf_links = re.findall(r'href="(/v1/attestations/[^"]+/pdf[^"]*)"', space.text)
        own = parse_qs(urlsplit(unescape(pdf_links[0])).query)["token"][0]
        assert own != token
        assert (await http.get(unescape(pdf_links[0]))).status_code == 200
        assert (await http.get("/space", params={"token": own})).status_code == 403

        # A dead personal link, followed from a browser: a page saying what to do.
        dead = await http.get(
            "/space", params={"token": token[:-3] + "AAA"}, headers={"Accept": "text/html"}
        )
        assert dead.status_code == 403 and dead.headers["content-type"].startswith("text/html")
        assert "demandez-en un nouveau à votre centre d'examen" in unescape(dead.text)

        # BC02 revoked by a correction: the share page says so and its files are gone (410).
        await http.post(
            f"{registry.url}/v1/corrections",
            headers=auth,
            json={
                "deliberation_id": created.json()["deliberation_id"],
                "candidate_number": "H9",
                "bloc": "RNCP40705BC02",
                "grade": "3",
                "reason": "Erreur de report de note",
            },
        )
        bc02 = held["RNCP40705BC02"]["id"]

        async def withdrawn_file() -> bool:
            got = await http.get(f"/s/{share}/attestations/{bc02}/pdf")
            return got.status_code == 410

        await until(withdrawn_file)
        assert (await http.get(f"/s/{share}/attestations/{bc02}/credential")).status_code == 410

        # At most MAX_ACTIVE_LINKS in force; withdrawing one makes room for another.
        bc01 = [held["RNCP40705BC01"]["id"]]
        for _ in range(MAX_ACTIVE_LINKS - 1):
            assert (await create_share(http, token, bc01)).status_code == 303
        full = await create_share(http, token, bc01)
        assert full.status_code == 422 and "retirez-en un" in unescape(full.text)
        space = await http.get("/space", params={"token": token})
        first = re.findall(r'action="/space/shares/([0-9a-f-]{36})/revoke', space.text)[0]
        await http.post(f"/space/shares/{first}/revoke", data={"token": token})
        assert (await create_share(http, token, bc01)).status_code == 303
