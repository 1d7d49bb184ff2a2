"""What a share link shows: exactly the attestations the candidate chose, each with its live
status, its verification address and its files, for as long as the candidate consents.

Each page view is recorded as an opening (at most one per ``OPENING_WINDOW``), which the
candidate sees in their space. An unknown link is 404; an expired or revoked one 410, so an
employer is told the candidate withdrew or let it lapse, not that something broke.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from services.attestations.api import views
from services.attestations.api.routes import (
    PRIVATE,
    Context,
    Ctx,
    Lang,
    signed_pdf,
)
from services.attestations.api.space import PAGE_TZ, share_url
from services.attestations.domain.aggregates import Attestation
from services.attestations.domain.jose import MEDIA_TYPE
from services.attestations.domain.sharing import TOKEN_CHARS
from services.attestations.shares import ShareLinks
from services.runtime import i18n
from services.runtime.i18n import N_, Texts
from services.runtime.problems import NotFound, Problem

router = APIRouter()

ShareToken = Annotated[
    str, Path(min_length=1, max_length=TOKEN_CHARS + 1, description="Le lien de partage")
]
AttestationId = Annotated[str, Path(max_length=32, description="Identifiant de l'attestation")]
GONE = {
    None: (404, N_("Ce lien de partage n'existe pas. Vérifiez l'adresse reçue.")),
    "expired": (
        410,
        N_(
            "Ce lien de partage a expiré : son titulaire l'avait limité dans le temps. Ses "
            "attestations restent vérifiables ; demandez-lui un nouveau lien."
        ),
    ),
    "revoked": (
        410,
        N_(
            "Ce lien de partage a été retiré par son titulaire. Demandez-lui un nouveau lien "
            "si vous en avez encore besoin."
        ),
    ),
}


def _gone(request: Request, c: Context, state: str | None) -> Response:
    status, message = GONE[state]
    t = c.texts(i18n.language_of(request))
    context = {"title": t.gettext("Lien de partage indisponible"), "message": t.gettext(message)}
    return c.page(request, "unavailable.html", context, status_code=status, headers=PRIVATE)


def _entry(token: str, a: Attestation, verify_url: str, t: Texts) -> dict[str, Any]:
    base = f"/s/{token}/attestations/{a.public_id}"
    lang = "" if t.lang == i18n.DEFAULT else f"?{i18n.QUERY_PARAMETER}={t.lang}"
    return {
        **views.for_page(a, t),
        "id": a.public_id,
        "verify_url": verify_url + lang,
        "pdf_url": f"{base}/pdf{lang}",
        "credential_url": f"{base}/credential",
    }


def _page(request: Request, c: Context, token: str) -> Response:
    links = ShareLinks(c.app)
    shared = links.open(token)
    if shared is None:
        found = links.find(token)
        return _gone(request, c, links.state(found) if found else None)
    link, holder = shared.link, shared.holder
    expires = (
        datetime.fromisoformat(link.expires_at).astimezone(PAGE_TZ) if link.expires_at else None
    )
    t = c.texts(i18n.language_of(request))
    context = {
        "holder_name": " ".join([*holder.given_names, holder.family_name]),
        "entries": [
            _entry(token, a, c.app.links.verify(a.public_id), t) for a in shared.attestations
        ],
        "expires_on": t.date(expires.date()) if expires else None,
        "url": share_url(c, token),
    }
    return c.page(request, "share.html", context, headers=PRIVATE)


@router.get(
    "/s/{token}",
    tags=["partage"],
    summary="Les attestations qu'un candidat a choisi de partager (lien de partage)",
    response_class=Response,
)
async def shared_page(request: Request, c: Ctx, token: ShareToken, lang: Lang = None) -> Response:
    return await run_in_threadpool(_page, request, c, token)


def _shared_attestation(c: Context, token: str, attestation_id: str) -> Attestation:
    links = ShareLinks(c.app)
    found = links.find(token)
    if found is None or links.state(found) != "active":
        raise NotFound("Ce lien de partage n'existe pas, a expiré ou a été retiré.")
    link, _ = found
    shown = attestation_id in link.attestation_ids
    attestation = c.app.attestation(attestation_id) if shown else None
    if attestation is None:
        raise NotFound("Ce lien de partage ne montre pas cette attestation.")
    if attestation.status != "valid":  # as the page: no signed file of what no longer holds
        raise Problem(
            "Cette attestation a été révoquée : elle ne prouve plus rien ; son adresse de "
            "vérification dit pourquoi.",
            status=410,
        )
    return attestation


@router.get(
    "/s/{token}/attestations/{attestation_id}/pdf",
    tags=["partage"],
    summary="Le PDF signé d'une attestation partagée",
    response_class=Response,
)
def shared_pdf(
    request: Request, c: Ctx, token: ShareToken, attestation_id: AttestationId, lang: Lang = None
) -> Response:
    a = _shared_attestation(c, token, attestation_id)
    language = i18n.language_of(request)
    data = signed_pdf(c, a, language)
    disposition = f'attachment; filename="attestation-{a.code}.pdf"'
    return Response(
        data,
        media_type="application/pdf",
        headers={**PRIVATE, **i18n.response_headers(language), "Content-Disposition": disposition},
    )


@router.get(
    "/s/{token}/attestations/{attestation_id}/credential",
    tags=["partage"],
    summary="Le justificatif signé d'une attestation partagée (application/vc+jwt)",
    response_class=Response,
)
def shared_credential(c: Ctx, token: ShareToken, attestation_id: AttestationId) -> Response:
    a = _shared_attestation(c, token, attestation_id)
    disposition = f'attachment; filename="{a.public_id}.vc.jwt"'
    return Response(
        a.credential,
        media_type=MEDIA_TYPE,
        headers={**PRIVATE, "Content-Disposition": disposition},
    )
