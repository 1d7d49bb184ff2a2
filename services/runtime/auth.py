"""Exam-center authentication at the HTTP edge: ``Authorization: Bearer <API key>``.

Each service resolves a key to a center its own way (the registry from its store, the others
from the key digests the registry publishes); the HTTP side is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.runtime.problems import Unauthorized

Authenticate = Callable[[str], str | None]
_bearer = HTTPBearer(auto_error=False, description="Clé d'API du centre d'examen")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
MISSING = "Clé d'API manquante : envoyez « Authorization: Bearer <clé du centre> »."


def bearer_center(
    resolver: Callable[[Request], Authenticate], *, required: bool = True
) -> Callable[..., Awaitable[str | None]]:
    """A dependency giving the authenticated center's UAI (None when optional and absent)."""

    async def center(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str | None:
        if credentials is None:
            if required:
                raise Unauthorized(MISSING, headers=_CHALLENGE)
            return None
        uai = await run_in_threadpool(resolver(request), credentials.credentials)
        if uai is None:
            raise Unauthorized("Clé d'API inconnue ou révoquée.", headers=_CHALLENGE)
        return uai

    return center
