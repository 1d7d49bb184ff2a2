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

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import segno
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Form, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from pydantic import StringConstraints

from contracts.referential import load_certification
from services.attestations.api import views
from services.attestations.api.routes import PRIVATE, Context, Ctx, pdf_content
from services.attestations.domain.aggregates import Attestation, Holder
from services.attestations.domain.sharing import DURATIONS, MAX_ATTESTATIONS, ShareLink, describe
from services.attestations.pdf import cached_pdf, french_date
from services.attestations.shares import ShareLinks, ShareRefused
from services.attestations.transcript import build_signed_transcript, gather
from services.runtime import tokens
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
REFUSED = (
    "Lien personnel invalide, expiré ou révoqué ; demandez-en un nouveau à votre centre d'examen."
)
BUSY = "Votre espace change en ce moment ; réessayez dans un instant."
DURATION_CHOICES = (  # the form's choices, in DURATIONS' keys
    ("7d", "7 jours"),
    ("30d", "30 jours"),
    ("90d", "90 jours"),
    ("365d", "1 an"),
    ("until_revoked", "jusqu'à ce que je le retire"),
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


def _entry(c: Context, a: Attestation, token: str) -> dict[str, Any]:
    base = f"/v1/attestations/{a.public_id}"
    query = urlencode({"token": token})
    return {
        **views.for_page(a),
        "id": a.public_id,
        "superseded_by": a.superseded_by,
        "verify_url": c.app.links.verify(a.public_id),
        "pdf_url": f"{base}/pdf?{query}",
        "credential_url": f"{base}/credential?{query}",
    }


def _order(a: Attestation) -> tuple[bool, bool, str, str]:
    # In force first (the diploma, then blocs in code order), then revoked ones, newest first.
    return a.status != "valid", a.kind != "certification", a.code, a.issued_at


def share_url(c: Context, token: str) -> str:
    return f"{c.app.links.base_url}/s/{token}"


def qr_svg(url: str, label: str) -> Markup:
    """The URL as an inline SVG QR code (no request, no script: the CSP allows it)."""
    svg = segno.make(url, error="m", micro=False).svg_inline(
        scale=4, border=4, dark="#000", light="#fff", svgclass="qr", lineclass=None
    )
    # An image with a name for screen readers. segno's markup holds nothing of the client's
    # (the URL is ours, its token base64url) and the label is escaped.
    named = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(label)}" ', 1)
    return Markup(named)  # noqa: S704


def _when(iso: str | None) -> str | None:
    if iso is None:
        return None
    at = datetime.fromisoformat(iso).astimezone(PAGE_TZ)
    return f"{french_date(at.date())} à {at:%H:%M}"


def _link_entry(
    c: Context, link: ShareLink, holder: Holder, titles: dict[str, str], created: str | None
) -> dict[str, Any]:
    facts = describe(link)
    url = share_url(c, link.token)
    state = link.state(datetime.now(UTC), holder.links_epoch)
    return {
        **facts,
        "state": state,
        "url": url if state == "active" else None,
        "qr": qr_svg(url, "QR code du lien de partage") if state == "active" else None,
        "titles": [titles.get(pid, pid) for pid in link.attestation_ids],
        "created_on": _when(link.created_at),
        "expires_on": _when(link.expires_at),
        "revoked_on": _when(link.revoked_at),
        "openings_on": [_when(at) for at in facts["recent_openings"]],
        "just_created": facts["id"] == created,
    }


def _space_page(
    c: Context,
    token: str,
    holder: Holder,
    held: list[Attestation],
    *,
    created: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    entries = [_entry(c, a, token) for a in sorted(held, key=_order)]
    by_id = {e["id"]: e for e in entries}
    for e in entries:
        replacement = by_id.get(e["superseded_by"] or "")
        e["superseded_title"] = replacement["title"] if replacement else None
    titles = {e["id"]: f"{e['code']} — {e['title']}" for e in entries}
    links = [_link_entry(c, link, holder, titles, created) for link in ShareLinks(c.app).of(holder)]
    page = c.templates.env.get_template("space.html").render(
        holder_name=" ".join([*holder.given_names, holder.family_name]),
        token=token,
        valid=[e for e in entries if e["status"] == "valid"],
        revoked=[e for e in entries if e["status"] != "valid"],
        releve_url="/space/releve?" + urlencode({"token": token}),
        links=links,
        durations=DURATION_CHOICES,
        error=error,
    )
    return Response(
        page, status_code=status, media_type="text/html; charset=utf-8", headers=PRIVATE
    )


def _back_to_space(token: str, anchor: str) -> RedirectResponse:
    # 303: the browser follows with a GET, so a reload does not post the form again.
    return RedirectResponse(f"/space?{urlencode({'token': token})}#{anchor}", status_code=303)


@router.get(
    "/space",
    tags=["espace personnel"],
    summary="L'espace personnel du candidat : ses attestations (lien personnel requis)",
    response_class=Response,
)
async def personal_space(
    c: Ctx,
    token: SpaceToken,
    created: Annotated[str | None, Query(max_length=36, include_in_schema=False)] = None,
) -> Response:
    holder, held = await run_in_threadpool(_holder_of, c, token)
    return await run_in_threadpool(_space_page, c, token, holder, held, created=created)


@router.get(
    "/space/releve",
    tags=["espace personnel"],
    summary="Le relevé de toutes les attestations en vigueur du candidat (PDF signé, PAdES)",
    response_class=Response,
)
def transcript(c: Ctx, token: SpaceToken) -> Response:
    holder, held = _holder_of(c, token)
    valid = [a for a in held if a.status == "valid"]
    today = datetime.now(PAGE_TZ).date()
    # One file per holder, day and set of attestations in force: built once, then served
    # from the (encrypted) cache until one of them changes.
    digest = hashlib.sha256(
        "\n".join(
            [
                holder.exam_center,
                holder.candidate_number,
                today.isoformat(),
                *sorted(a.public_id for a in valid),
            ]
        ).encode()
    ).hexdigest()[:40]

    def build() -> bytes:
        contents = [(pdf_content(c, a), a.credential) for a in valid]
        first = contents[0][0] if contents else None
        cert = load_certification(holder.certification)
        return build_signed_transcript(
            gather(
                contents,
                holder_name=" ".join([*holder.given_names, holder.family_name]),
                certification_code=cert.code,
                certification_title=cert.title,
                issuer_name=first.issuer_name if first else cert.certifier.name,
                produced_on=today,
            ),
            c.pdf_signer,
        )

    data = cached_pdf(c.pdf_cache / f"releve-{digest}.pdf", build, c.pdf_cipher)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            **PRIVATE,
            "Content-Disposition": f'attachment; filename="releve-{holder.certification}.pdf"',
        },
    )


@router.post(
    "/space/shares",
    tags=["espace personnel"],
    summary="Créer un lien de partage des attestations choisies (formulaire de l'espace)",
    response_class=Response,
    status_code=303,
)
def create_share(
    c: Ctx,
    token: FormToken,
    duration: Annotated[str, Form(max_length=16)] = "",
    attestation: Annotated[list[PublicId], Form(max_length=MAX_ATTESTATIONS)] = [],  # noqa: B006
) -> Response:
    holder, held = _holder_of(c, token)
    try:
        link = ShareLinks(c.app).create(holder, attestation, duration)
    except ShareRefused as refused:
        # The candidate's own mistake (nothing ticked): the space again, saying what to fix.
        return _space_page(c, token, holder, held, error=str(refused), status=422)
    except IntegrityError:
        raise Conflict(BUSY) from None
    query = urlencode({"token": token, "created": str(link.id)})
    return RedirectResponse(f"/space?{query}#partage-{link.id}", status_code=303)


@router.post(
    "/space/shares/{link_id}/revoke",
    tags=["espace personnel"],
    summary="Retirer un lien de partage, avec effet immédiat (formulaire de l'espace)",
    response_class=Response,
    status_code=303,
)
def revoke_share(c: Ctx, link_id: LinkId, token: FormToken) -> Response:
    holder, _ = _holder_of(c, token)
    try:
        revoked = ShareLinks(c.app).revoke(holder, link_id)
    except IntegrityError:
        raise Conflict(BUSY) from None
    if revoked is None:
        raise Forbidden("Ce lien de partage n'est pas l'un des vôtres.")
    return _back_to_space(token, f"partage-{link_id}")
