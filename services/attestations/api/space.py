"""The candidate's personal space: every attestation they hold, its status, its PDF and its
credential, reached from the personal link in their e-mails (a token that names no single
attestation; revoked with the candidate's other links)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from services.attestations.api import views
from services.attestations.api.routes import Context, Ctx
from services.attestations.domain.aggregates import Attestation
from services.runtime import tokens
from services.runtime.problems import Forbidden

router = APIRouter()

SpaceToken = Annotated[
    str, Query(max_length=tokens.MAX_TOKEN_CHARS, description="Lien personnel du candidat")
]
REFUSED = (
    "Lien personnel invalide, expiré ou révoqué ; demandez-en un nouveau à votre centre d'examen."
)


def _holder_of(c: Context, token: str) -> tuple[str, str, list[Attestation]]:
    """(center, candidate number, attestations) the space token opens; Forbidden otherwise."""
    grant = tokens.read(c.download_secret, token)
    if grant is None or grant.attestation_id is not None:  # one attestation's link: not this
        raise Forbidden(REFUSED)
    center, _, number = grant.subject.partition("/")
    holder = c.app.holder(center, number)
    if holder is None or grant.epoch != holder.links_epoch:
        raise Forbidden(REFUSED)
    return center, number, c.app.attestations_of(center, number) or []


def _entry(c: Context, a: Attestation, token: str) -> dict[str, Any]:
    base = f"/v1/attestations/{a.public_id}"
    return {
        **views.for_page(a),
        "id": a.public_id,
        "superseded_by": a.superseded_by,
        "verify_url": c.app.links.verify(a.public_id),
        "pdf_url": f"{base}/pdf?token={token}",
        "credential_url": f"{base}/credential?token={token}",
    }


def _order(a: Attestation) -> tuple[bool, bool, str, str]:
    # In force first (the diploma, then blocs in code order), then revoked ones, newest first.
    return a.status != "valid", a.kind != "certification", a.code, a.issued_at


@router.get(
    "/space",
    tags=["espace personnel"],
    summary="L'espace personnel du candidat : ses attestations (lien personnel requis)",
    response_class=Response,
)
async def personal_space(c: Ctx, token: SpaceToken) -> Response:
    _, _, held = await run_in_threadpool(_holder_of, c, token)
    entries = [_entry(c, a, token) for a in sorted(held, key=_order)]
    by_id = {e["id"]: e for e in entries}
    for e in entries:
        replacement = by_id.get(e["superseded_by"] or "")
        e["superseded_title"] = replacement["title"] if replacement else None
    holder_name = entries[0]["holder_name"] if entries else ""
    page = c.templates.env.get_template("space.html").render(
        holder_name=holder_name,
        valid=[e for e in entries if e["status"] == "valid"],
        revoked=[e for e in entries if e["status"] != "valid"],
    )
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "private, no-store"},
    )
