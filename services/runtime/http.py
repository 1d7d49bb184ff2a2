"""HTTP app factory shared by the services: problem+json errors, request ids, trace context,
JSON access logs, Prometheus request metrics, a body size limit, ``/healthz``, ``/readyz`` and
``/metrics``."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime import tracing
from services.runtime.logging import request_id
from services.runtime.metrics import CONTENT_TYPE, UNMATCHED, Metrics
from services.runtime.problems import InternalError, PayloadTooLarge, Problem, Unprocessable

log = logging.getLogger("certibloc.http")

PROBLEM_JSON = "application/problem+json"
# A readiness check answers None when fine, else why not (in French, shown in /readyz).
ReadinessCheck = Callable[[], Awaitable[str | None]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
METRICS_PATH = "/metrics"
_QUIET = frozenset({"/healthz", "/readyz"})  # probes: not logged
MAX_FIELD_ERRORS = 100  # a body with thousands of bad fields gets the first hundred


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def create_app(
    *,
    title: str,
    version: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None,
    readiness: Sequence[ReadinessCheck] = (),
    max_body_bytes: int,
    metrics: Metrics | None = None,
) -> FastAPI:
    metrics = metrics or Metrics()
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _install_probes(app, readiness)
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(
                Problem("Le corps de la requête n'est pas du JSON valide.", status=400), request
            )
        items = field_errors(errors)
        return problem_response(
            Unprocessable(
                "La requête contient des champs invalides ; voir « errors ».",
                errors=items,
            ),
            request,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {
            404: "Ressource introuvable.",
            405: "Méthode non autorisée pour cette ressource.",
        }
        detail = messages.get(exc.status_code, str(exc.detail))
        return problem_response(Problem(detail, status=exc.status_code), request)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(InternalError("Erreur interne ; elle a été journalisée."), request)


# Pydantic's messages are English; a user is told in French what is wrong with a field.
_FRENCH: dict[str, str] = {
    "missing": "champ obligatoire",
    "extra_forbidden": "champ inconnu",
    "string_too_long": "{max_length} caractère(s) au plus",
    "string_too_short": "{min_length} caractère(s) au moins",
    "too_long": "{max_length} élément(s) au plus",
    "too_short": "{min_length} élément(s) au moins",
    "string_pattern_mismatch": "format invalide",
    "string_type": "texte attendu",
    "list_type": "liste attendue",
    "dict_type": "objet attendu",
    "model_type": "objet attendu",
    "bool_type": "booléen attendu (true ou false)",
    "bool_parsing": "booléen attendu (true ou false)",
    "int_type": "nombre entier attendu",
    "int_parsing": "nombre entier attendu",
    "float_type": "nombre attendu",
    "float_parsing": "nombre attendu",
    "date_type": "date attendue (AAAA-MM-JJ)",
    "date_parsing": "date invalide (attendu AAAA-MM-JJ)",
    "date_from_datetime_parsing": "date invalide (attendu AAAA-MM-JJ)",
    "literal_error": "valeur non admise (attendu : {expected})",
    "enum": "valeur non admise (attendu : {expected})",
}


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic's validation errors as ``{field, reason}``, in French when we know the type;
    the client's input is never echoed."""
    items = []
    for e in errors[:MAX_FIELD_ERRORS]:
        template = _FRENCH.get(e.get("type", ""))
        try:
            reason = template.format(**(e.get("ctx") or {})) if template else e.get("msg", "")
        except (KeyError, IndexError):
            reason = e.get("msg", "")
        items.append(
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "reason": reason,
            }
        )
    return items


def _install_probes(app: FastAPI, readiness: Sequence[ReadinessCheck]) -> None:
    @app.get("/healthz", tags=["operations"], summary="Le processus répond")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Stockage et NATS joignables, relais de sortie non bloqué",
    )
    async def readyz() -> JSONResponse:
        problems = []
        for check in readiness:
            try:
                problem = await check()
            except Exception:
                problem = f"{getattr(check, '__name__', 'vérification')} a échoué"
            if problem:
                problems.append(problem)
        if problems:
            return problem_response(
                Problem(f"Pas prêt : {' ; '.join(problems)}.", status=503, problems=problems)
            )
        return JSONResponse({"status": "ready"})


class RequestContextMiddleware:
    """Request id (``X-Request-ID`` in, echoed out), trace context (``traceparent`` in: continued,
    else a new trace), request metrics by route template, one JSON access-log line, and
    ``GET /metrics``.

    ``/metrics`` is answered here rather than by a route: the router tries routes in order, and
    one more route ahead of the services' own costs every request a few microseconds.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or Metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._metrics(scope, receive, send)
            return
        incoming_id, traceparent, tracestate = _incoming(scope)
        rid = incoming_id or uuid.uuid4().hex
        parent = tracing.parse(traceparent, tracestate) if traceparent else None
        trace = parent.child() if parent is not None else tracing.new_trace()
        token = request_id.set(rid)
        trace_token = tracing.activate(trace)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            # The router left the matched route in the scope: its template, never the raw
            # path (/v/{attestation_id}, not one series per attestation).
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe_request(scope["method"], route, status, elapsed)
            if scope["path"] not in _QUIET:
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            tracing.deactivate(trace_token)
            request_id.reset(token)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        # In a thread: in multiprocess mode it reads every worker's files.
        body = await asyncio.to_thread(self.metrics.exposition)
        await Response(body, media_type=CONTENT_TYPE)(scope, receive, send)
        self.metrics.observe_request(
            scope["method"], METRICS_PATH, 200, time.perf_counter() - started
        )


def _incoming(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """(request id if well-formed, traceparent, tracestate) from the request headers."""
    rid = traceparent = tracestate = None
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            rid = text if _REQUEST_ID.match(text) else None
        elif name == b"traceparent":
            # Several traceparent headers: invalid (W3C Trace Context 3.2); start a new trace.
            traceparent = "" if traceparent is not None else value.decode("latin-1")
        elif name == b"tracestate":
            text = value.decode("latin-1")
            tracestate = f"{tracestate},{text}" if tracestate else text  # may be split
    return rid, traceparent, tracestate


class BodyLimitMiddleware:
    """Refuse bodies above ``max_bytes`` with 413, before reading them when the size is declared."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        too_large = PayloadTooLarge(
            f"Le corps de la requête dépasse la taille maximale de {self.max_bytes} octets."
        )
        if declared is not None and declared > self.max_bytes:
            response = problem_response(too_large)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
