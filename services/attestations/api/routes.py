"""The attestations service's routes (API.md, attestations section)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from services.attestations.api import views
from services.attestations.application import AttestationsApp
from services.attestations.domain.aggregates import Attestation
from services.attestations.domain.jose import MEDIA_TYPE
from services.attestations.identity import did_document
from services.attestations.pdf import PdfContent, PdfSigner, build_signed_pdf, embedded_credential
from services.attestations.verification import Check, Report, check_credential
from services.runtime import tokens
from services.runtime.auth import MISSING, bearer_center
from services.runtime.problems import Forbidden, NotFound, Unauthorized, UnsupportedMediaType
from services.runtime.secrets import write_private

router = APIRouter()


class Context:
    """What the routes need, set up once by the composition root."""

    def __init__(
        self,
        app: AttestationsApp,
        templates: Jinja2Templates,
        jwks: Any,
        pdf_signer: PdfSigner,
        pdf_cache: Path,
        download_secret: bytes,
    ) -> None:
        self.app = app
        self.templates = templates
        self.jwks = jwks  # callable returning the current JWKS
        self.pdf_signer = pdf_signer
        self.pdf_cache = pdf_cache
        self.download_secret = download_secret
        self.views = views.VerificationViews(app, self.issuer, templates.env)

    @property
    def issuer(self) -> dict[str, str]:
        return {"id": self.app.issuer.id, "name": self.app.issuer.name}


async def ctx(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


Ctx = Annotated[Context, Depends(ctx)]


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@router.get(
    "/v/{attestation_id}",
    tags=["vérification"],
    summary="Vérifier une attestation (HTML, ou JSON avec Accept: application/json)",
    response_model=None,
)
async def verification(attestation_id: str, request: Request, c: Ctx) -> Response:
    if c.app.local_reads:
        # An SQLite lookup is an in-process B-tree read of microseconds: cheaper in the event
        # loop than a hop to the thread pool. Network stores go to a thread.
        rendered = c.views.lookup(attestation_id)
    else:
        rendered = await run_in_threadpool(c.views.lookup, attestation_id)
    headers = {"Cache-Control": "no-store", "Vary": "Accept"}
    if _wants_json(request):
        if rendered is None:
            raise NotFound("Aucune attestation ne correspond à cet identifiant.")
        return Response(rendered.json, media_type="application/json", headers=headers)
    if rendered is None:
        return c.templates.TemplateResponse(
            request, "unknown.html", {}, status_code=404, headers={"Vary": "Accept"}
        )
    page = c.views.html(attestation_id, rendered, date.today())
    return Response(page, media_type="text/html; charset=utf-8", headers=headers)


OptionalCenter = Annotated[
    str | None,
    Depends(bearer_center(lambda r: r.app.state.context.app.authenticate_center, required=False)),
]


@router.get(
    "/v1/attestations", tags=["attestations"], summary="Attestations d'un candidat du centre"
)
def list_attestations(
    c: Ctx, center: OptionalCenter, candidate_number: Annotated[str, Query(max_length=32)]
) -> dict[str, Any]:
    if center is None:
        raise Unauthorized(MISSING, headers={"WWW-Authenticate": "Bearer"})
    found = c.app.attestations_of(center, candidate_number)
    if found is None:
        raise NotFound(f"Candidat {candidate_number} inconnu pour ce centre.")
    return {
        "candidate_number": candidate_number,
        "attestations": [
            {
                "id": a.public_id,
                "kind": a.kind,
                "bloc": a.code if a.kind == "bloc" else None,
                "code": a.code,
                "title": a.title,
                "status": a.status,
                "issued_at": a.issued_at,
                "revoked_at": a.revoked_at,
                "verify_url": c.app.links.verify(a.public_id),
            }
            for a in sorted(found, key=lambda a: (a.issued_at, a.code))
        ],
    }


def _downloadable(
    c: Context, attestation_id: str, center: str | None, token: str | None
) -> Attestation:
    attestation = c.app.attestation(attestation_id)
    if attestation is None:
        raise NotFound("Aucune attestation ne correspond à cet identifiant.")
    if center is not None:
        if center != attestation.exam_center:
            raise NotFound("Aucune attestation ne correspond à cet identifiant.")
        return attestation
    if token is None:
        raise Unauthorized(
            "Lien personnel (?token=) ou clé d'API du centre requis pour télécharger.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    holder = tokens.holder_subject(attestation.exam_center, attestation.candidate_number)
    if tokens.subject_of(c.download_secret, token) != holder:
        raise Forbidden("Lien de téléchargement invalide ou expiré ; demandez-en un nouveau.")
    return attestation


Token = Annotated[str | None, Query(max_length=512, description="Jeton personnel du candidat")]


@router.get(
    "/v1/attestations/{attestation_id}/credential",
    tags=["attestations"],
    summary="Le justificatif signé (application/vc+jwt)",
    response_class=Response,
)
def download_credential(
    attestation_id: str, c: Ctx, center: OptionalCenter, token: Token = None
) -> Response:
    attestation = _downloadable(c, attestation_id, center, token)
    return Response(
        attestation.credential,
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{attestation.public_id}.vc.jwt"'},
    )


@router.get(
    "/v1/attestations/{attestation_id}/pdf",
    tags=["attestations"],
    summary="L'attestation en PDF signé (PAdES), construite au premier téléchargement",
    response_class=Response,
)
def download_pdf(
    attestation_id: str, c: Ctx, center: OptionalCenter, token: Token = None
) -> Response:
    attestation = _downloadable(c, attestation_id, center, token)
    cached = c.pdf_cache / f"{attestation.public_id}.pdf"
    if cached.exists():
        data = cached.read_bytes()
    else:
        data = build_signed_pdf(pdf_content(c, attestation), attestation.credential, c.pdf_signer)
        write_private(cached, data)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="attestation-{attestation.code}.pdf"'
        },
    )


def pdf_content(c: Context, attestation: Attestation) -> PdfContent:
    page = views.for_page(attestation, c.issuer)
    return PdfContent(
        attestation_id=attestation.public_id,
        holder_name=page["holder_name"],
        kind="bloc" if attestation.kind == "bloc" else "certification",
        code=attestation.code,
        title=attestation.title,
        competences=tuple(page["competences"]),
        certification_code=page["certification_code"],
        certification_title=page["certification_title"],
        issuer_name=page["issuer_name"],
        issued_on=datetime.fromisoformat(attestation.issued_at).date(),
        verify_url=c.app.links.verify(attestation.public_id),
    )


@router.post(
    "/v1/verify",
    tags=["vérification"],
    summary="Vérifier un justificatif (application/vc+jwt) ou un PDF (application/pdf)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MEDIA_TYPE: {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def verify_upload(request: Request, c: Ctx) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type == "application/pdf":
        token = embedded_credential(body)
        if token is None:
            report = Report()
            report.checks.append(
                Check(
                    "format", False, "le PDF ne contient pas de justificatif (attestation.vc.jwt)"
                )
            )
            return report.as_json()
    elif content_type in (MEDIA_TYPE, "application/jwt", "text/plain"):
        token = body.decode("ascii", errors="replace").strip()
    else:
        raise UnsupportedMediaType(
            f"Envoyez le justificatif en {MEDIA_TYPE} ou l'attestation en application/pdf."
        )
    jwks = c.jwks()
    report = await run_in_threadpool(check_credential, token, jwks, lambda p: _status_of(c, p))
    return report.as_json()


def _status_of(c: Context, credential: Mapping[str, Any]) -> tuple[str, str]:
    verify_url = str(credential.get("id", ""))
    prefix = c.app.links.verify("")
    if not verify_url.startswith(prefix):
        return "unknown", "justificatif émis par un autre service"
    attestation = c.app.attestation(verify_url[len(prefix) :])
    if attestation is None:
        return "unknown", "attestation inconnue de l'émetteur"
    if attestation.revoked_at:
        return "revoked", (
            f"révoquée le {attestation.revoked_at[:10]} : {attestation.revocation_reason}"
        )
    return "valid", "non révoquée"


@router.get("/.well-known/jwks.json", tags=["clés"], summary="Clés publiques, actives et retirées")
def jwks(c: Ctx) -> JSONResponse:
    return JSONResponse(c.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/did.json", tags=["clés"], summary="Document did:web de l'émetteur")
def did_json(c: Ctx) -> JSONResponse:
    return JSONResponse(did_document(c.app.issuer.id, c.jwks()), media_type="application/did+json")


@router.get(
    "/v1/status-lists/{number}",
    tags=["clés"],
    summary="Liste de statut (W3C Bitstring Status List), signée",
    response_class=Response,
)
def status_list(number: int, c: Ctx) -> Response:
    token = c.app.status_list_credential(number)
    if token is None:
        raise NotFound(f"Aucune liste de statut n° {number}.")
    return Response(token, media_type=MEDIA_TYPE, headers={"Cache-Control": "max-age=60"})
