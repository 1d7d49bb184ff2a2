"""Routes of the SD-JWT VC form: its Token Status Lists and its type metadata (both public,
read by any verifier or wallet). The credential itself is served by
``GET /v1/attestations/{id}/credential?format=dc+sd-jwt`` (routes.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from services.attestations.domain import token_status_list as tsl
from services.attestations.domain.aggregates import MAX_STATUS_LIST
from services.attestations.sd_jwt_vc import type_metadata
from services.attestations.token_status import TTL_SECONDS, TokenStatusLists
from services.runtime.problems import NotFound

router = APIRouter()


def token_status_lists(request: Request) -> TokenStatusLists:
    lists: TokenStatusLists = request.app.state.token_status
    return lists


@router.get(
    "/v1/token-status-lists/{number}",
    tags=["clés"],
    summary="Liste de statut (IETF Token Status List, application/statuslist+jwt), signée",
    response_class=Response,
    responses={200: {"content": {tsl.MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
async def token_status_list(
    number: Annotated[int, Path(ge=1, le=MAX_STATUS_LIST)], request: Request
) -> Response:
    token = await run_in_threadpool(token_status_lists(request).token, number)
    if token is None:
        raise NotFound(f"Aucune liste de statut n° {number}.")
    # A verifier may keep it ttl seconds (a claim of the token); HTTP caches as briefly.
    return Response(
        token, media_type=tsl.MEDIA_TYPE, headers={"Cache-Control": f"max-age={TTL_SECONDS // 5}"}
    )


@router.get(
    "/vct/{certification}/{kind}",
    tags=["clés"],
    summary="Métadonnées du type (vct) d'un SD-JWT VC : bloc ou certification",
)
def vct_type_metadata(
    certification: Annotated[str, Path(pattern=r"^RNCP[0-9]{1,8}$", max_length=12)],
    kind: Literal["bloc", "certification"],
    request: Request,
) -> JSONResponse:
    base_url = request.app.state.context.app.links.base_url
    document = type_metadata(base_url, certification, kind)
    if document is None:
        raise NotFound(f"Aucune certification {certification}.")
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})
