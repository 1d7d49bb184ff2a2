"""What a share link shows: exactly the attestations the candidate chose, each with its live
status, its verification address and its files, for as long as the candidate consents.

Each page view is recorded as an opening (at most one per ``OPENING_WINDOW``), which the
candidate sees in their space. An unknown link is 404; an expired or revoked one 410, so an
employer is told the candidate withdrew or let it lapse, not that something broke.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from services.attestations.api import views
from services.attestations.api.routes import PRIVATE, Context, Ctx, pdf_content
from services.attestations.api.space import PAGE_TZ, share_url
from services.attestations.domain.aggregates import Attestation
from services.attestations.domain.jose import MEDIA_TYPE
from services.attestations.domain.sharing import TOKEN_CHARS
from services.attestations.pdf import build_signed_pdf, cached_pdf, french_date
from services.attestations.shares import ShareLinks
from services.runtime.problems import NotFound

router = APIRouter()

ShareToken = Annotated[
    str, Path(min_length=1, max_length=TOKEN_CHARS + 1, description="Le lien de partage")
]
AttestationId = Annotated[str, Path(max_length=32, description="Identifiant de l'attestation")]
GONE = {
    None: (404, "Ce lien de partage n'existe pas. Vérifiez l'adresse reçue."),
    "expired": (
        410,
        "Ce lien de partage a expiré : son titulaire l'avait limité dans le temps. Ses "
        "attestations restent vérifiables ; demandez-lui un nouveau lien.",
    ),
    "revoked": (
        410,
        "Ce lien de partage a été retiré par son titulaire. Demandez-lui un nouveau lien si "
        "vous en avez encore besoin.",
    ),
}


def _gone(c: Context, state: str | None) -> Response:
    status, message = GONE[state]
    page = c.templates.env.get_template("share_gone.html").render(message=message)
    return Response(
        page, status_code=status, media_type="text/html; charset=utf-8", headers=PRIVATE
    )


def _entry(token: str, a: Attestation, verify_url: str) -> dict[str, Any]:
    base = f"/s/{token}/attestations/{a.public_id}"
    return {
        **views.for_page(a),
        "id": a.public_id,
        "verify_url": verify_url,
        "pdf_url": f"{base}/pdf",
        "credential_url": f"{base}/credential",
    }


def _page(c: Context, token: str) -> Response:
    links = ShareLinks(c.app)
    shared = links.open(token)
    if shared is None:
        found = links.find(token)
        return _gone(c, links.state(found) if found else None)
    link, holder = shared.link, shared.holder
    expires = (
        datetime.fromisoformat(link.expires_at).astimezone(PAGE_TZ) if link.expires_at else None
    )
    page = c.templates.env.get_template("share.html").render(
        holder_name=" ".join([*holder.given_names, holder.family_name]),
        entries=[_entry(token, a, c.app.links.verify(a.public_id)) for a in shared.attestations],
        expires_on=french_date(expires.date()) if expires else None,
        url=share_url(c, token),
    )
    return Response(page, media_type="text/html; charset=utf-8", headers=PRIVATE)


@router.get(
    "/s/{token}",
    tags=["partage"],
    summary="Les attestations qu'un candidat a choisi de partager (lien de partage)",
    response_class=Response,
)
async def shared_page(c: Ctx, token: ShareToken) -> Response:
    return await run_in_threadpool(_page, c, token)


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
    return attestation


@router.get(
    "/s/{token}/attestations/{attestation_id}/pdf",
    tags=["partage"],
    summary="Le PDF signé d'une attestation partagée",
    response_class=Response,
)
def shared_pdf(c: Ctx, token: ShareToken, attestation_id: AttestationId) -> Response:
    a = _shared_attestation(c, token, attestation_id)
    data = cached_pdf(
        c.pdf_cache / f"{a.public_id}.pdf",
        lambda: build_signed_pdf(pdf_content(c, a), a.credential, c.pdf_signer),
        c.pdf_cipher,
    )
    disposition = f'attachment; filename="attestation-{a.code}.pdf"'
    return Response(
        data,
        media_type="application/pdf",
        headers={**PRIVATE, "Content-Disposition": disposition},
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
