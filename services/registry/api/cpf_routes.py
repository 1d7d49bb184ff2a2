"""The certifier's routes: the CPF declaration flux (``services.registry.cpf``).

Only the certifier reaches them, with its own API key (``REGISTRY_CERTIFIER_KEY_FILE``), never
an exam center's: the flux names every holder of every center.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.registry.api.deps import Registry
from services.registry.cpf import declarations
from services.registry.settings import RegistrySettings
from services.runtime.problems import Forbidden, Unauthorized, Unprocessable

router = APIRouter(prefix="/v1/cpf", tags=["certificateur"])
_bearer = HTTPBearer(auto_error=False, description="Clé d'API du certificateur")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _settings(request: Request) -> RegistrySettings:
    settings: RegistrySettings = request.app.state.settings
    return settings


def certifier_key_matches(settings: RegistrySettings, presented: str) -> bool | None:
    """Whether ``presented`` is the certifier's key (None: no key is configured). Read at each
    request, so replacing the file rotates the key without a restart; compared in constant
    time, on digests so the key's length does not show either."""
    try:
        expected = settings.certifier_key_path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not expected:
        return None
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


async def certifier(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None:
        raise Unauthorized(
            "Clé d'API manquante : envoyez « Authorization: Bearer <clé du certificateur> ».",
            headers=_CHALLENGE,
        )
    matches = certifier_key_matches(_settings(request), credentials.credentials)
    if matches is None:
        raise Forbidden("Aucune clé de certificateur n'est configurée sur ce registre.")
    if not matches:
        raise Forbidden("Cette route est réservée au certificateur.")


Certifier = Annotated[None, Depends(certifier)]
Since = Annotated[
    str,
    Query(
        max_length=10,
        description="AAAA-MM-JJ : les attributions enregistrées ce jour-là (UTC) ou après.",
        examples=["2026-07-01"],
    ),
]


def _since(value: str) -> date:
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise Unprocessable(
            "Paramètre « since » invalide : date attendue (AAAA-MM-JJ).",
            errors=[{"field": "since", "reason": "date attendue (AAAA-MM-JJ)"}],
        ) from None


@router.get(
    "/flux",
    summary="Le flux XML d'accrochage CPF (cpf-1.1.2.xsd) des attributions depuis une date",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}},
        204: {"description": "Aucune attribution à déclarer"},
    },
)
async def get_flux(since: Since, _: Certifier, registry: Registry, request: Request) -> Response:
    day = _since(since)
    settings = _settings(request)
    xml, selection = await run_in_threadpool(
        declarations.export,
        registry,
        day,
        client_id=settings.cpf_client_id,
        contract_id=settings.cpf_contract_id,
    )
    headers = {
        "CPF-Declared": str(len(selection.passages)),
        "CPF-Incomplete": str(len(selection.incomplete)),
        "CPF-Withdrawn": str(len(selection.withdrawn)),
    }
    if xml is None:
        return Response(status_code=204, headers=headers)
    return Response(xml, media_type="application/xml", headers=headers)


@router.get(
    "/report",
    summary="Ce que le flux déclare, et ce qu'il ne peut pas déclarer (champs manquants, "
    "attributions retirées)",
)
async def get_report(since: Since, _: Certifier, registry: Registry) -> dict[str, Any]:
    day = _since(since)
    selection = await run_in_threadpool(declarations.select, registry, day)
    return selection.report()
