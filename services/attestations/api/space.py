"""The candidate's personal space: every attestation they hold, its status, its PDF and its
credential, the relevé of what is in force, and their share links (made, listed, revoked),
reached from the personal link in their e-mails (a token that names no single attestation;
revoked with the candidate's other links).

Works without JavaScript: plain links and forms. A form carries the personal link in a
hidden field, which also makes it proof against cross-site requests (another site cannot
know it); the answer to a form is a redirect back to the space (303), so reloading the page
never posts twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import segno
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from pydantic import StringConstraints

from contracts.referential import load_certification
from services.attestations.api import views
from services.attestations.api.routes import PRIVATE, Context, Ctx, Lang, pdf_content
from services.attestations.domain.aggregates import Attestation, Holder
from services.attestations.domain.sharing import DURATIONS, MAX_ATTESTATIONS, ShareLink, describe
from services.attestations.pdf import cached_pdf
from services.attestations.shares import ShareLinks, ShareRefused
from services.attestations.transcript import build_signed_transcript, gather
from services.runtime import i18n, tokens
from services.runtime.i18n import N_, Texts
from services.runtime.problems import Conflict, Forbidden

router = APIRouter()

SpaceToken = Annotated[
    str, Query(max_length=tokens.MAX_TOKEN_CHARS, description="Lien personnel du candidat")
]
FormToken = Annotated[
    str, Form(max_length=tokens.MAX_TOKEN_CHARS, description="Lien personnel du candidat")
]
PublicId = Annotated[str, StringConstraints(max_length=32)]
LinkId = Annotated[str, Path(max_length=36, description="Identifiant du lien de partage")]
REFUSED = N_(
    "Lien personnel invalide, expiré ou révoqué ; demandez-en un nouveau à votre centre d'examen."
)
BUSY = "Votre espace change en ce moment ; réessayez dans un instant."
DURATION_CHOICES = (  # the form's choices, in DURATIONS' keys
    ("7d", N_("7 jours")),
    ("30d", N_("30 jours")),
    ("90d", N_("90 jours")),
    ("365d", N_("1 an")),
    ("until_revoked", N_("jusqu'à ce que je le retire")),
)
assert {key for key, _ in DURATION_CHOICES} == set(DURATIONS)
PAGE_TZ = ZoneInfo("Europe/Paris")  # times on the page: the candidates are in France


def _holder_of(c: Context, token: str) -> tuple[Holder, list[Attestation]]:
    """The holder the space token opens and their attestations; Forbidden otherwise."""
    grant = tokens.read(c.download_secret, token)
    if grant is None or grant.attestation_id is not None:  # one attestation's link: not this
        raise Forbidden(REFUSED)
    center, _, number = grant.subject.partition("/")
    holder = c.app.holder(center, number)
    if holder is None or grant.epoch != holder.links_epoch:
        raise Forbidden(REFUSED)
    return holder, c.app.attestations_of(center, number) or []


def _lang_param(t: Texts) -> dict[str, str]:
    """``lang=`` for the links that must open in the page's language (none for French)."""
    return {} if t.lang == i18n.DEFAULT else {i18n.QUERY_PARAMETER: t.lang}


FILE_LINK_TTL = 24 * 3600  # the space's file links: one attestation each, for a day


def _entry(c: Context, a: Attestation, holder: Holder, t: Texts) -> dict[str, Any]:
    """One attestation for the page. Its file links carry a token of their own, for this
    attestation alone and a day: a PDF link copied out of the space does not open the space."""
    base = f"/v1/attestations/{a.public_id}"
    subject = tokens.holder_subject(holder.exam_center, holder.candidate_number)
    own = tokens.mint(c.download_secret, subject, a.public_id, holder.links_epoch, FILE_LINK_TTL)
    return {
        **views.for_page(a, t),
        "id": a.public_id,
        "superseded_by": a.superseded_by,
        "verify_url": c.app.links.verify(a.public_id),
        "pdf_url": f"{base}/pdf?{urlencode({'token': own, **_lang_param(t)})}",
        "credential_url": f"{base}/credential?{urlencode({'token': own})}",
    }


def _ordered(held: list[Attestation]) -> list[Attestation]:
    """In force first (the diploma, then blocs in code order), then revoked ones, newest
    first."""
    valid = [a for a in held if a.status == "valid"]
    revoked = [a for a in held if a.status != "valid"]
    valid.sort(key=lambda a: (a.kind != "certification", a.code))
    revoked.sort(key=lambda a: a.revoked_at or a.issued_at, reverse=True)
    return valid + revoked


def share_url(c: Context, token: str) -> str:
    return f"{c.app.links.base_url}/s/{token}"


@lru_cache(maxsize=2048)
def qr_svg(url: str, label: str) -> Markup:
    """The URL as an inline SVG QR code (no request, no script: the CSP allows it); kept, as
    a link's URL never changes and drawing it is most of a space's cost."""
    svg = segno.make(url, error="m", micro=False).svg_inline(
        border=4, dark="#000", light="#fff", svgclass="qr", lineclass=None, omitsize=True
    )
    # omitsize: a viewBox and no fixed size, so the CSS scales the whole code (not a crop).
    # An image with a name for screen readers. segno's markup holds nothing of the client's
    # (the URL is ours, its token base64url) and the label is escaped.
    named = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(label)}" ', 1)
    return Markup(named)  # noqa: S704


def _local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(PAGE_TZ)


def _day(iso: str | None, t: Texts) -> str | None:
    return t.date(_local(iso).date()) if iso else None


def _moment(iso: str, t: Texts) -> str:
    at = _local(iso)
    return t.gettext("le %(day)s à %(time)s") % {"day": t.date(at.date()), "time": f"{at:%H:%M}"}


def _link_entry(
    c: Context, link: ShareLink, holder: Holder, titles: dict[str, str], t: Texts
) -> dict[str, Any]:
    facts = describe(link)
    state = link.state(datetime.now(UTC), holder.links_epoch)
    url = share_url(c, link.token) if state == "active" else None
    return {
        **facts,
        "state": state,
        "url": url,
        "qr": qr_svg(url, t.gettext("QR code du lien de partage")) if url else None,
        "titles": [titles.get(pid, pid) for pid in link.attestation_ids],
        "created_on": _day(link.created_at, t),
        "expires_on": _day(link.expires_at, t),
        "revoked_on": _day(link.revoked_at, t),
        "openings_on": [_moment(at, t) for at in facts["recent_openings"]],
    }


def _space_page(
    request: Request,
    c: Context,
    token: str,
    holder: Holder,
    held: list[Attestation],
    *,
    created: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    t = c.texts(i18n.language_of(request))
    entries = [_entry(c, a, holder, t) for a in _ordered(held)]
    by_id = {e["id"]: e for e in entries}
    for e in entries:
        replacement = by_id.get(e["superseded_by"] or "")
        e["superseded_title"] = replacement["title"] if replacement else None
    titles = {e["id"]: f"{e['code']} — {e['title']}" for e in entries}
    links = [_link_entry(c, link, holder, titles, t) for link in ShareLinks(c.app).of(holder)]
    for link in links:
        link["just_created"] = link["id"] == created
    context = {
        "holder_name": " ".join([*holder.given_names, holder.family_name]),
        "token": token,
        "valid": [e for e in entries if e["status"] == "valid"],
        "revoked": [e for e in entries if e["status"] != "valid"],
        "releve_url": "/space/releve?" + urlencode({"token": token, **_lang_param(t)}),
        "links": links,
        "durations": [(key, t.gettext(label)) for key, label in DURATION_CHOICES],
        "error": error,
    }
    # The language switch keeps the personal link only (not the mark of a link just made).
    return c.page(
        request, "space.html", context, status_code=status, headers=PRIVATE, keep=("token",)
    )


def _back_to_space(request: Request, token: str, anchor: str, **more: str) -> RedirectResponse:
    """303 to the space, in the language asked for: the browser follows with a GET, so
    reloading the page does not post the form again."""
    query = {"token": token, **more}
    if (lang := i18n.supported(request.query_params.get(i18n.QUERY_PARAMETER))) is not None:
        query[i18n.QUERY_PARAMETER] = lang
    return RedirectResponse(f"/space?{urlencode(query)}#{anchor}", status_code=303)


@router.get(
    "/space",
    tags=["espace personnel"],
    summary="L'espace personnel du candidat : ses attestations (lien personnel requis)",
    response_class=Response,
)
async def personal_space(
    request: Request,
    c: Ctx,
    token: SpaceToken,
    lang: Lang = None,
    created: Annotated[str | None, Query(max_length=36, include_in_schema=False)] = None,
) -> Response:
    try:
        holder, held = await run_in_threadpool(_holder_of, c, token)
    except Forbidden:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        # A person following an old e-mail's link: a page that says what to do, not JSON.
        t = c.texts(i18n.language_of(request))
        context = {
            "title": t.gettext("Lien personnel invalide"),
            "message": t.gettext(REFUSED),
            "service": t.gettext("Mon espace — attestations de blocs de compétences"),
        }
        return c.page(request, "unavailable.html", context, status_code=403, headers=PRIVATE)
    return await run_in_threadpool(
        lambda: _space_page(request, c, token, holder, held, created=created)
    )


@router.get(
    "/space/releve",
    tags=["espace personnel"],
    summary="Le relevé de toutes les attestations en vigueur du candidat (PDF signé, PAdES)",
    response_class=Response,
)
def transcript(request: Request, c: Ctx, token: SpaceToken, lang: Lang = None) -> Response:
    holder, held = _holder_of(c, token)
    language = i18n.language_of(request)
    t = c.texts(language)
    valid = [a for a in held if a.status == "valid"]
    today = datetime.now(PAGE_TZ).date()
    # One file per holder, day, language and set of attestations in force: built once, then
    # served from the (encrypted) cache until one of them changes.
    key = [holder.exam_center, holder.candidate_number, today.isoformat(), language]
    digest = hashlib.sha256("\n".join(key + sorted(a.public_id for a in valid)).encode())
    whose = hashlib.sha256("\n".join(key[:2]).encode()).hexdigest()[:16]
    path = c.pdf_cache / f"releve-{whose}-{digest.hexdigest()[:32]}.pdf"

    def build() -> bytes:
        contents = [(pdf_content(c, a, t), a.credential) for a in valid]
        cert = load_certification(holder.certification)
        document = gather(
            contents,
            holder_name=" ".join([*holder.given_names, holder.family_name]),
            certification_code=cert.code,
            certification_title=cert.title_in(language),
            issuer_name=contents[0][0].issuer_name if contents else cert.certifier.name,
            produced_on=today,
        )
        built = build_signed_transcript(document, c.pdf_signer, t)
        _forget_older_releves(c.pdf_cache, whose, keep=path.name)
        return built

    data = cached_pdf(path, build, c.pdf_cipher)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            **PRIVATE,
            **i18n.response_headers(language),
            "Content-Disposition": f'attachment; filename="releve-{holder.certification}.pdf"',
        },
    )


RELEVE_KEPT_SECONDS = 24 * 3600


def _forget_older_releves(cache: FilePath, whose: str, keep: str) -> None:
    """A new relevé of this candidate replaces the ones built more than a day ago (another
    day's, or before an attestation changed): the cache holds a few per candidate, not one
    per visit forever. Today's in another language stay."""
    cutoff = time.time() - RELEVE_KEPT_SECONDS
    for old in cache.glob(f"releve-{whose}-*.pdf"):
        with contextlib.suppress(FileNotFoundError):  # another request removed it meanwhile
            if old.name != keep and old.stat().st_mtime < cutoff:
                old.unlink()


@router.post(
    "/space/shares",
    tags=["espace personnel"],
    summary="Créer un lien de partage des attestations choisies (formulaire de l'espace)",
    response_class=Response,
    status_code=303,
)
def create_share(
    request: Request,
    c: Ctx,
    token: FormToken,
    lang: Lang = None,
    duration: Annotated[str, Form(max_length=16)] = "",
    attestation: Annotated[list[PublicId], Form(max_length=MAX_ATTESTATIONS)] = [],  # noqa: B006
) -> Response:
    holder, held = _holder_of(c, token)
    try:
        link = ShareLinks(c.app).create(holder, attestation, duration)
    except ShareRefused as refused:
        # The candidate's own mistake (nothing ticked): the space again, saying what to fix.
        error = refused.worded(c.texts(i18n.language_of(request)))
        return _space_page(request, c, token, holder, held, error=error, status=422)
    except IntegrityError:
        raise Conflict(BUSY) from None
    return _back_to_space(request, token, f"partage-{link.id}", created=str(link.id))


@router.post(
    "/space/shares/{link_id}/revoke",
    tags=["espace personnel"],
    summary="Retirer un lien de partage, avec effet immédiat (formulaire de l'espace)",
    response_class=Response,
    status_code=303,
)
def revoke_share(
    request: Request, c: Ctx, link_id: LinkId, token: FormToken, lang: Lang = None
) -> Response:
    holder, _ = _holder_of(c, token)
    try:
        revoked = ShareLinks(c.app).revoke(holder, link_id)
    except IntegrityError:
        raise Conflict(BUSY) from None
    if revoked is None:
        raise Forbidden("Ce lien de partage n'est pas l'un des vôtres.")
    return _back_to_space(request, token, f"partage-{link_id}")
