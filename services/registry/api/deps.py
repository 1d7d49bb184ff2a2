"""Request-scoped dependencies: the application and the authenticated exam center."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.registry.application import RegistryApp
from services.runtime.problems import Unauthorized

_bearer = HTTPBearer(auto_error=False, description="Clé d'API du centre d'examen")


async def get_registry(request: Request) -> RegistryApp:
    registry: RegistryApp = request.app.state.registry
    return registry


Registry = Annotated[RegistryApp, Depends(get_registry)]


async def authenticated_center(
    registry: Registry,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None:
        raise Unauthorized(
            "Clé d'API manquante : envoyez « Authorization: Bearer <clé du centre> ».",
            headers={"WWW-Authenticate": "Bearer"},
        )
    uai = await run_in_threadpool(registry.authenticate, credentials.credentials)
    if uai is None:
        raise Unauthorized(
            "Clé d'API inconnue ou révoquée.", headers={"WWW-Authenticate": "Bearer"}
        )
    return uai


Center = Annotated[str, Depends(authenticated_center)]
