"""The attestations service's routes (API.md, attestations section)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from services.attestations.api import views
from services.attestations.api.data_integrity import (
    SECURED_FORMS,
    Format,
    data_integrity_forms,
    wants_data_integrity,
)
from services.attestations.application import AttestationsApp
from services.attestations.domain.aggregates import Attestation
from services.attestations.domain.data_integrity import MEDIA_TYPE as LD_MEDIA_TYPE
from services.attestations.domain.jose import MEDIA_TYPE
from services.attestations.identity import did_document
from services.attestations.pdf import (
    CacheCipher,
    PdfContent,
    PdfSigner,
    build_signed_pdf,
    cached_pdf,
)
from services.attestations.pdf_inspection import PdfInspector, VerifyLimits
from services.attestations.sd_jwt_vc import MEDIA_TYPE as SD_JWT_MEDIA_TYPE
from services.attestations.sd_jwt_vc import NotIssuable, issue_sd_jwt_vc
from services.attestations.sd_jwt_verification import check_sd_jwt_vc
from services.attestations.token_status import TokenStatusLists
from services.attestations.verification import check_credential, check_pdf
from services.attestations.verification_di import JSON_TYPES, check_data_integrity
from services.runtime import i18n, tokens
from services.runtime.auth import MISSING, bearer_center
from services.runtime.http import read_capped
from services.runtime.problems import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

router = APIRouter()


class Context:
    """What the routes need, set up once by the composition root."""

    def __init__(
        self,
        app: AttestationsApp,
        pages: i18n.Templates,
        jwks: Any,
        pdf_signer: PdfSigner,
        pdf_cache: FilePath,
        download_secret: bytes,
        pdf_cipher: CacheCipher | None = None,
    ) -> None:
        self.app = app
        # The pages, one Jinja2 environment per language (render with page(), below);
        # ``templates`` is the French one, for a page not converted yet.
        self.pages = pages
        self.templates = Jinja2Templates(env=pages.env(i18n.DEFAULT))
        self.jwks = jwks  # callable returning the current JWKS
        self.pdf_signer = pdf_signer
        self.pdf_cache = pdf_cache
        self.download_secret = download_secret
        self.pdf_cipher = pdf_cipher  # the cached PDFs name their holder: encrypted on disk
        self.views = views.VerificationViews(app, pages)

    def texts(self, lang: str) -> i18n.Texts:
        return self.pages.catalogues.texts(lang)

    def page(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        keep: tuple[str, ...] | None = None,
    ) -> Response:
        """The page ``name`` in the request's language (``?lang=``, else Accept-Language,
        else French), with its language switch (``languages``; the other query parameters
        kept, or only those in ``keep``) and ``Content-Language``/``Vary`` headers. The
        template's context also has ``lang`` and the ``date`` filter (``i18n.Templates``)."""
        lang = i18n.language_of(request)
        body = self.pages.render(
            lang, name, languages=i18n.language_links(request, lang, keep), **context
        )
        out = dict(headers or {})
        vary = [v.strip() for v in out.pop("Vary", "").split(",") if v.strip()]
        out.update(i18n.response_headers(lang, vary))
        return Response(
            body, status_code=status_code, media_type="text/html; charset=utf-8", headers=out
        )


async def ctx(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


Ctx = Annotated[Context, Depends(ctx)]


Lang = Annotated[
    str | None,
    Query(
        max_length=16,
        description="Langue de la page ou du PDF : fr (par défaut) ou en ; sans elle, "
        "l'en-tête Accept-Language décide. Une autre valeur est ignorée.",
    ),
]


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@router.get(
    "/v/{attestation_id}",
    tags=["vérification"],
    summary="Vérifier une attestation (HTML, ou JSON avec Accept: application/json)",
    response_model=None,
)
async def verification(
    attestation_id: str, request: Request, c: Ctx, lang: Lang = None
) -> Response:
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
        return c.page(request, "unknown.html", {}, status_code=404, headers={"Vary": "Accept"})
    # The JSON above stays French (what the signed credential says); the page is worded in
    # the reader's language.
    language = i18n.language_of(request)
    page = c.views.html(attestation_id, rendered, date.today(), language)
    headers.update(i18n.response_headers(language, ["Accept"]))
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
    refused = Forbidden(
        "Lien de téléchargement invalide, expiré ou révoqué ; demandez-en un nouveau "
        "à votre centre d'examen."
    )
    grant = tokens.read(c.download_secret, token)
    subject = tokens.holder_subject(attestation.exam_center, attestation.candidate_number)
    # What the token alone can refuse is refused before the holder is read from the store.
    if grant is None or not grant.opens(subject, attestation.public_id, grant.epoch):
        raise refused
    holder = c.app.holder(attestation.exam_center, attestation.candidate_number)
    if holder is None or grant.epoch != holder.links_epoch:
        raise refused
    return attestation


# A personal file: not kept by browsers or proxies (its link may be revoked).
PRIVATE = {"Cache-Control": "private, no-store"}


Token = Annotated[
    str | None,
    Query(max_length=tokens.MAX_TOKEN_CHARS, description="Jeton personnel du candidat"),
]


class LinksRevocation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0, "yes": not booleans
    send_new_links: bool = Field(
        default=False,
        description="Envoyer au candidat un e-mail avec de nouveaux liens vers ses "
        "attestations en vigueur.",
    )


Center = Annotated[
    str, Depends(bearer_center(lambda r: r.app.state.context.app.authenticate_center))
]


@router.post(
    "/v1/candidates/{candidate_number}/download-links/revoke",
    tags=["attestations"],
    summary="Révoquer tous les liens personnels d'un candidat (nouvel e-mail sur demande)",
    status_code=202,
)
def revoke_download_links(
    candidate_number: Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")],
    body: LinksRevocation,
    c: Ctx,
    center: Center,
) -> dict[str, Any]:
    try:
        epoch = c.app.revoke_links(
            center, candidate_number, by=f"center:{center}", send_new_links=body.send_new_links
        )
    except IntegrityError:
        raise Conflict(
            "Le dossier du candidat change en ce moment ; réessayez dans un instant."
        ) from None
    if epoch is None:
        raise NotFound(f"Candidat {candidate_number} inconnu pour ce centre.")
    return {
        "candidate_number": candidate_number,
        "links_revoked": True,
        "new_links_sent": body.send_new_links,
    }


@router.get(
    "/v1/attestations/{attestation_id}/credential",
    tags=["attestations"],
    summary="Le justificatif signé (application/vc+jwt ; application/vc+ld+json avec une "
    "preuve Data Integrity ; application/dc+sd-jwt)",
    response_class=Response,
    responses=SECURED_FORMS,
)
def download_credential(
    attestation_id: str,
    request: Request,
    c: Ctx,
    center: OptionalCenter,
    token: Token = None,
    form: Format = None,
) -> Response:
    attestation = _downloadable(c, attestation_id, center, token)
    if form in ("dc+sd-jwt", "dc sd-jwt"):
        try:
            issued = issue_sd_jwt_vc(c.app, attestation)
        except NotIssuable:
            raise Conflict("Cette attestation est révoquée : aucun justificatif neuf.") from None
        return Response(
            issued,
            media_type=SD_JWT_MEDIA_TYPE,
            headers={
                **PRIVATE,
                "Content-Disposition": f'attachment; filename="{attestation.public_id}.sd-jwt"',
            },
        )
    if wants_data_integrity(request, form):
        return Response(
            data_integrity_forms(request).of(attestation.credential),
            media_type=LD_MEDIA_TYPE,
            headers={
                **PRIVATE,
                "Vary": "Accept",
                "Content-Disposition": f'attachment; filename="{attestation.public_id}.vc.jsonld"',
            },
        )
    return Response(
        attestation.credential,
        media_type=MEDIA_TYPE,
        headers={
            **PRIVATE,
            "Vary": "Accept",
            "Content-Disposition": f'attachment; filename="{attestation.public_id}.vc.jwt"',
        },
    )


@router.get(
    "/v1/attestations/{attestation_id}/pdf",
    tags=["attestations"],
    summary="L'attestation en PDF signé (PAdES), construite au premier téléchargement",
    response_class=Response,
)
def download_pdf(
    attestation_id: str,
    request: Request,
    c: Ctx,
    center: OptionalCenter,
    token: Token = None,
    lang: Lang = None,
) -> Response:
    attestation = _downloadable(c, attestation_id, center, token)
    language = i18n.language_of(request)
    return Response(
        signed_pdf(c, attestation, language),
        media_type="application/pdf",
        headers={
            **PRIVATE,
            **i18n.response_headers(language),
            "Content-Disposition": f'attachment; filename="attestation-{attestation.code}.pdf"',
        },
    )


def signed_pdf(c: Context, attestation: Attestation, language: str) -> bytes:
    """The attestation's signed PDF in ``language``: built once per language even when first
    requested many times at once, never read half-written (``cached_pdf``)."""
    texts = c.texts(language)
    return cached_pdf(
        c.pdf_cache / pdf_cache_name(attestation.public_id, language),
        lambda: build_signed_pdf(
            pdf_content(c, attestation, texts), attestation.credential, c.pdf_signer, texts
        ),
        c.pdf_cipher,
    )


def pdf_cache_name(public_id: str, lang: str) -> str:
    """``<id>.pdf`` in French (the name the cache had before English existed),
    ``<id>.<lang>.pdf`` in another language."""
    return f"{public_id}.pdf" if lang == i18n.DEFAULT else f"{public_id}.{lang}.pdf"


def pdf_content(c: Any, attestation: Attestation, texts: i18n.Texts | None = None) -> PdfContent:
    """What the PDF of ``attestation`` says, worded in ``texts``' language (French if None)."""
    page = views.for_page(attestation, texts)
    return PdfContent(
        attestation_id=attestation.public_id,
        holder_name=page["holder_name"],
        kind="bloc" if attestation.kind == "bloc" else "certification",
        code=attestation.code,
        title=page["title"],
        competences=tuple(page["competences"]),
        certification_code=page["certification_code"],
        certification_title=page["certification_title"],
        issuer_name=page["issuer_name"],
        issued_on=datetime.fromisoformat(attestation.issued_at).date(),
        verify_url=c.app.links.verify(attestation.public_id),
        awarded_on=date.fromisoformat(attestation.awarded_on) if attestation.awarded_on else None,
        session=page["session_label"],
        route=page["route_label"],
        mention=page["mention"],
        exam_center=page["exam_center"],
    )


@router.post(
    "/v1/verify",
    tags=["vérification"],
    summary="Vérifier un justificatif (application/vc+jwt ; JSON-LD avec une preuve Data "
    "Integrity : application/vc+ld+json ; application/dc+sd-jwt) ou un PDF (application/pdf)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MEDIA_TYPE: {"schema": {"type": "string"}},
                **{media: {"schema": {"type": "object"}} for media in JSON_TYPES},
                SD_JWT_MEDIA_TYPE: {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def verify_upload(request: Request, c: Ctx) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limits: VerifyLimits = request.app.state.verify_limits
    if content_type == "application/pdf":
        limit, what = limits.pdf_bytes, "Le PDF"
    elif content_type in (
        MEDIA_TYPE,
        "application/jwt",
        "text/plain",
        SD_JWT_MEDIA_TYPE,
        *JSON_TYPES,
    ):
        limit, what = limits.jws_bytes, "Le justificatif"
    else:
        raise UnsupportedMediaType(
            f"Envoyez le justificatif en {MEDIA_TYPE}, {LD_MEDIA_TYPE} ou "
            f"{SD_JWT_MEDIA_TYPE}, ou l'attestation en application/pdf."
        )
    too_large = PayloadTooLarge(f"{what} dépasse {limit} octets : il ne peut pas être vérifié.")
    body = await read_capped(request, limit, too_large)
    jwks = c.jwks()
    if content_type == "application/pdf":
        # Parsing and the PAdES check run in a worker process, under time and memory limits.
        inspector: PdfInspector = request.app.state.pdf_inspector
        inspection = await inspector.inspect(body)
        report = await run_in_threadpool(check_pdf, inspection, jwks, lambda p: _status_of(c, p))
    elif content_type in JSON_TYPES:
        document = did_document(c.app.issuers.did, jwks)
        report = await run_in_threadpool(
            check_data_integrity, body, document, lambda p: _status_of(c, p)
        )
    elif content_type == SD_JWT_MEDIA_TYPE:
        lists: TokenStatusLists = request.app.state.token_status
        return await run_in_threadpool(
            check_sd_jwt_vc,
            body.decode("ascii", errors="replace"),
            jwks,
            lambda uri, idx: _token_status_of(lists, uri, idx),
            base_url=c.app.links.base_url,
            now=int(time.time()),
        )
    else:
        token = body.decode("ascii", errors="replace").strip()
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


def _token_status_of(lists: TokenStatusLists, uri: str, index: int) -> tuple[str, str]:
    number = lists.number_of(uri)
    status = lists.status(number, index) if number is not None else None
    if status is None:
        return "unknown", "liste de statut inconnue de l'émetteur"
    return ("revoked", "révoquée") if status else ("valid", "non révoquée")


@router.get("/.well-known/jwks.json", tags=["clés"], summary="Clés publiques, actives et retirées")
def jwks(c: Ctx) -> JSONResponse:
    return JSONResponse(c.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/did.json", tags=["clés"], summary="Document did:web de l'émetteur")
def did_json(c: Ctx) -> JSONResponse:
    return JSONResponse(
        did_document(c.app.issuers.did, c.jwks()), media_type="application/did+json"
    )


@router.get(
    "/v1/status-lists/{number}",
    tags=["clés"],
    summary="Liste de statut (W3C Bitstring Status List), signée (vc+jwt, ou vc+ld+json avec "
    "une preuve Data Integrity)",
    response_class=Response,
    responses=SECURED_FORMS,
)
def status_list(number: int, request: Request, c: Ctx, form: Format = None) -> Response:
    token = c.app.status_list_credential(number)
    if token is None:
        raise NotFound(f"Aucune liste de statut n° {number}.")
    headers = {"Cache-Control": "max-age=60", "Vary": "Accept"}
    if wants_data_integrity(request, form):
        secured = data_integrity_forms(request).of(token)
        return Response(secured, media_type=LD_MEDIA_TYPE, headers=headers)
    return Response(token, media_type=MEDIA_TYPE, headers=headers)
