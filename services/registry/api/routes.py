"""The registry's routes (API.md, registry section)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from services.registry.api import csv_lines
from services.registry.api.deps import Center, Registry
from services.registry.api.schemas import (
    CandidateIn,
    CorrectionIn,
    CorrectionOut,
    DeliberationIn,
    DeliberationMeta,
    DeliberationOut,
    VaeDecisionIn,
    VaeDecisionOut,
)
from services.registry.application import RegistryApp
from services.registry.cpf import declarations
from services.registry.domain.candidate import Candidate
from services.runtime.http import field_errors
from services.runtime.problems import BadRequest, Unprocessable, UnsupportedMediaType

router = APIRouter(prefix="/v1")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Même clé et même contenu : la première réponse est rejouée (200), rien "
        "n'est enregistré de nouveau. Même clé, autre contenu : 409. ASCII imprimable, 255 "
        "caractères au plus ; propre au centre et à la route.",
    ),
]


@router.get(
    "/certifications/{code}", tags=["référentiel"], summary="Le référentiel d'une certification"
)
def get_certification(code: str, registry: Registry) -> dict[str, Any]:
    cert = registry.certification(code)
    return cert.model_dump(mode="json")


@router.post(
    "/candidates",
    tags=["candidats"],
    status_code=201,
    summary="Inscrire un candidat (200 s'il est déjà inscrit à l'identique, 409 sinon)",
)
def post_candidate(
    body: CandidateIn, center: Center, registry: Registry, response: Response
) -> dict[str, Any]:
    created, candidate = registry.register_candidate(center, body.identity())
    if not created:
        response.status_code = 200
    return candidate_view(registry, candidate, with_history=False)


@router.get("/candidates/{candidate_number}", tags=["candidats"], summary="Dossier d'un candidat")
def get_candidate(
    candidate_number: Annotated[str, Path(max_length=32)], center: Center, registry: Registry
) -> dict[str, Any]:
    candidate = registry.candidate(center, candidate_number)
    return candidate_view(registry, candidate, with_history=True)


@router.post(
    "/deliberations",
    tags=["délibérations"],
    status_code=201,
    response_model=DeliberationOut,
    summary="Enregistrer un procès-verbal de délibération (tout ou rien)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": DeliberationIn.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["meta", "lines"],
                        "properties": {
                            "meta": {
                                "type": "string",
                                "description": "Le JSON du procès-verbal sans « lines ».",
                            },
                            "lines": {
                                "type": "string",
                                "format": "binary",
                                "description": "CSV : candidate_number,bloc,grade,modality "
                                "(« ; » ou « , », virgule décimale acceptée, UTF-8, BOM toléré)",
                            },
                        },
                    }
                },
            },
        }
    },
)
async def post_deliberation(
    request: Request,
    center: Center,
    registry: Registry,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    meta, rows, digest, former_digest = await _read_deliberation(request)
    receipt = await run_in_threadpool(
        lambda: registry.record_deliberation(
            center,
            certification=meta.certification,
            session=meta.session,
            deliberated_on=meta.deliberated_on,
            jury=meta.jury.model_dump(),
            rows=rows,
            idempotency_key=idempotency_key,
            request_digest=digest,
            former_digest=former_digest,
        )
    )
    if not receipt.created:
        response.status_code = 200
    return receipt.body


@router.post(
    "/vae-decisions",
    tags=["VAE"],
    status_code=201,
    response_model=VaeDecisionOut,
    summary="Enregistrer une décision de jury VAE",
)
def post_vae_decision(
    body: VaeDecisionIn,
    center: Center,
    registry: Registry,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    receipt = registry.record_vae_decision(
        center,
        candidate_number=body.candidate_number,
        certification=body.certification,
        decided_on=body.decided_on,
        decision=body.decision,
        blocs=body.blocs,
        jury=body.jury.model_dump(),
        idempotency_key=idempotency_key,
        request_digest=_digest(body),
    )
    if not receipt.created:
        response.status_code = 200
    return receipt.body


@router.post(
    "/corrections",
    tags=["délibérations"],
    status_code=201,
    response_model=CorrectionOut,
    summary="Corriger une erreur matérielle (nouvel événement qui nomme ce qu'il corrige)",
)
def post_correction(
    body: CorrectionIn,
    center: Center,
    registry: Registry,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    receipt = registry.correct_result(
        center,
        deliberation_id=body.deliberation_id,
        candidate_number=body.candidate_number,
        bloc=body.bloc,
        grade=body.grade,
        reason=body.reason,
        idempotency_key=idempotency_key,
        request_digest=_digest(body),
    )
    if not receipt.created:
        response.status_code = 200
    return receipt.body


def _digest(body: BaseModel) -> str:
    """The request as parsed, canonically: the same request however its JSON was spelled."""
    return _sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- helpers -----------------------------------------------------------------------------


async def _read_deliberation(
    request: Request,
) -> tuple[DeliberationMeta, list[tuple[int, dict[str, Any]]], str, str]:
    """(meta, numbered rows, digest of the request as parsed, digest of its raw bytes: what
    PVs recorded before 2026-12 were compared on)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = await request.body()
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("Le corps de la requête n'est pas du JSON valide.") from None
        parsed = _validate(DeliberationIn, raw)
        assert isinstance(parsed, DeliberationIn)
        rows = [(i, line) for i, line in enumerate(parsed.lines, start=1)]
        canonical = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        return parsed, rows, _sha256(canonical), _sha256(body)
    if content_type == "multipart/form-data":
        form = await request.form(max_files=2, max_fields=5)
        meta_part, lines_part = form.get("meta"), form.get("lines")
        if meta_part is None or lines_part is None:
            raise Unprocessable("Formulaire incomplet : parties « meta » et « lines » attendues.")
        meta_bytes = meta_part if isinstance(meta_part, str) else await meta_part.read()
        lines_bytes = (
            lines_part.encode() if isinstance(lines_part, str) else await lines_part.read()
        )
        try:
            raw_meta = orjson.loads(meta_bytes)
        except orjson.JSONDecodeError:
            raise BadRequest("La partie « meta » n'est pas du JSON valide.") from None
        meta = _validate(DeliberationMeta, raw_meta)
        rows = csv_lines.read_rows(lines_bytes)
        raw_meta_bytes = meta_bytes if isinstance(meta_bytes, bytes) else meta_bytes.encode()
        canonical = orjson.dumps(raw_meta, option=orjson.OPT_SORT_KEYS)
        return (
            meta,
            rows,
            _sha256(canonical + b"\0" + lines_bytes),
            _sha256(raw_meta_bytes + b"\0" + lines_bytes),
        )
    raise UnsupportedMediaType(
        "Envoyez le procès-verbal en application/json ou en multipart/form-data (meta + CSV)."
    )


def _validate(model: type[DeliberationMeta], raw: Any) -> DeliberationMeta:
    if not isinstance(raw, dict):
        raise Unprocessable("Le procès-verbal doit être un objet JSON.")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise Unprocessable(
            "La requête contient des champs invalides ; voir « errors ».",
            errors=field_errors(error.errors()),
        ) from None


def candidate_view(
    registry: RegistryApp, candidate: Candidate, *, with_history: bool
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "candidate_number": candidate.candidate_number,
        "exam_center": candidate.exam_center,
        **candidate.identity(),
        **candidate.cpf_details(),
        "acquired_blocs": [
            {
                "bloc": a.bloc,
                "via": a.via,
                "grade": a.grade,
                "session": a.session,
                "validated_on": a.validated_on,
                "source_id": a.source_id,
            }
            for a in sorted(candidate.acquisitions.values(), key=lambda a: a.bloc)
        ],
        "grades": [
            {
                "result_id": r.result_id,
                "session": r.session,
                "bloc": r.bloc,
                "grade": r.mark.to_text(),
                "modality": r.modality,
                "deliberation_id": r.deliberation_id,
                "deliberated_on": r.deliberated_on,
            }
            for r in sorted(candidate.results.values(), key=lambda r: (r.session, r.bloc))
        ],
        "diploma": None
        if candidate.award is None
        else {
            "via": candidate.award.via,
            "session": candidate.award.session,
            "average": candidate.award.average,
            "mention": candidate.award.mention,
            "awarded_on": candidate.award.awarded_on,
        },
    }
    view["cpf_declaration"] = declarations.status(candidate)
    if with_history:
        view["history"] = [
            {
                "version": e.originator_version,
                "event": type(e).__name__,
                "at": e.timestamp.isoformat(),
                **_history_details(e),
            }
            for e in registry.candidate_history(candidate)
        ]
    return view


def _history_details(e: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for name in (
        "deliberation_id",
        "decision_id",
        "correction_id",
        "session",
        "decision",
        "reason",
        "id_technique",
        "accepted",
        "message",
    ):
        if hasattr(e, name):
            details[name] = getattr(e, name)
    for name in ("validated", "withdrawn"):
        if hasattr(e, name):
            details[name] = [a["bloc"] for a in getattr(e, name)]
    if getattr(e, "award", None):
        details["awarded"] = True
    return details
