"""Domain errors -> problem+json, in the registry's own words."""

from __future__ import annotations

from eventsourcing.persistence import IntegrityError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.registry.application import LinesRejected
from services.registry.domain.errors import (
    ConflictingState,
    DomainError,
    RuleViolation,
    UnknownEntity,
)
from services.runtime.http import problem_response
from services.runtime.problems import Conflict, NotFound, Problem, Unavailable, Unprocessable

MAX_REPORTED_LINES = 1000


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def on_domain_error(request: Request, exc: DomainError) -> JSONResponse:
        problem: Problem
        if isinstance(exc, UnknownEntity):
            problem = NotFound(exc.message)
        elif isinstance(exc, ConflictingState):
            problem = Conflict(exc.message)
        elif isinstance(exc, RuleViolation):
            problem = Unprocessable(exc.message)
        else:
            problem = Unprocessable(exc.message)
        return problem_response(problem, request)

    @app.exception_handler(IntegrityError)
    async def on_contention(request: Request, exc: IntegrityError) -> JSONResponse:
        # Still conflicting after the application's retries: many writes to one record at once.
        return problem_response(
            Unavailable(
                "Ce dossier est modifié par d'autres requêtes au même moment ; rien n'a été "
                "enregistré pour celle-ci : réessayez dans un instant.",
                headers={"Retry-After": "1"},
            ),
            request,
        )

    @app.exception_handler(LinesRejected)
    async def on_lines(request: Request, exc: LinesRejected) -> JSONResponse:
        shown = exc.problems[:MAX_REPORTED_LINES]
        detail = (
            f"{len(exc.problems)} ligne(s) du procès-verbal refusée(s) ; rien n'a été enregistré. "
            "Corrigez les lignes listées dans « errors » et renvoyez le procès-verbal entier."
        )
        return problem_response(
            Unprocessable(
                detail,
                errors=[p.to_dict() for p in shown],
                errors_truncated=len(exc.problems) > len(shown),
            ),
            request,
        )
