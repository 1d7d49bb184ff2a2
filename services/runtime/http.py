"""HTTP app factory shared by the services: problem+json errors, request ids, trace context,
JSON access logs, Prometheus request metrics, a body size limit, security headers on every
response, ``/healthz`` and ``/readyz``. ``/metrics`` is not here: it is served on an internal
address only (``services.runtime.metrics``); the public port answers 404 for it."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime import tracing
from services.runtime.logging import request_id
from services.runtime.metrics import UNMATCHED, Metrics
from services.runtime.problems import InternalError, PayloadTooLarge, Problem, Unprocessable
from services.runtime.settings import ServiceSettings

log = logging.getLogger("certibloc.http")

PROBLEM_JSON = "application/problem+json"
# A readiness check answers None when fine, else why not (in French, shown in /readyz).
ReadinessCheck = Callable[[], Awaitable[str | None]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
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
    hsts_seconds: int | None = None,
) -> FastAPI:
    """``hsts_seconds`` None: ``CERTIBLOC_HSTS_SECONDS`` (0, no HSTS, unless configured)."""
    metrics = metrics or Metrics()
    if hsts_seconds is None:
        hsts_seconds = ServiceSettings().hsts_seconds
    app = _HardenedApp(
        security=SecurityPolicy(hsts_seconds=hsts_seconds),
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
        if isinstance(exc.__cause__, Problem):
            # FastAPI turns any error while reading the body into "400 error parsing the
            # body": a body streamed past the limit is a 413 (BodyLimitMiddleware's).
            return problem_response(exc.__cause__, request)
        messages = {
            404: "Ressource introuvable.",
            405: "Méthode non autorisée pour cette ressource.",
        }
        detail = messages.get(exc.status_code, str(exc.detail))
        # Starlette's headers kept: a 405 says which methods are allowed (RFC 9110, 15.5.6).
        headers = dict(exc.headers or {})
        return problem_response(Problem(detail, status=exc.status_code, headers=headers), request)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": loggable_path(request.scope)})
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
    else a new trace), request metrics by route template and one JSON access-log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or Metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
                        "path": loggable_path(scope),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            tracing.deactivate(trace_token)
            request_id.reset(token)


async def read_capped(request: Request, limit: int, too_large: Exception) -> bytes:
    """The request's body, refused with ``too_large`` as soon as it is declared or streams
    past ``limit`` bytes (never read whole first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


# Path parameters that are secrets (a share link's token): never written to the logs.
SECRET_PATH_PARAMETERS = frozenset({"token"})


def loggable_path(scope: Scope) -> str:
    """The request's path as the logs may keep it: the route's template where a path
    parameter is a secret (``/s/{token}``), the first segment alone when no route matched
    (a mistyped secret link must not land in the logs either), else the path itself."""
    route = getattr(scope.get("route"), "path", None)
    path = str(scope.get("path", ""))
    if route is None:
        first = path.split("/", 2)[1] if path.count("/") > 1 else path.strip("/")
        return f"/{first}/…" if path.count("/") > 1 else path
    if any(f"{{{name}}}" in route for name in SECRET_PATH_PARAMETERS):
        return str(route)
    return path


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


# --- security headers -------------------------------------------------------------------------

# Pages: no script at all, styles from our own static files only, no framing, forms and
# links to ourselves only.
HTML_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# JSON, problem+json, PDF, JWS: nothing to run or embed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# FastAPI's /docs and /redoc load Swagger UI / ReDoc from jsDelivr and run one inline script,
# allowed by its hash (computed on the page as served); nothing else inline runs.
DOCS_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net {hashes}; "
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "font-src https://fonts.gstatic.com; connect-src 'self'; worker-src blob:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Public documents a verifier on another origin fetches (keys, DID document, status lists):
# readable cross-origin (CORS, no credentials) and embeddable (CORP cross-origin).
PUBLIC_PREFIXES = ("/.well-known/", "/v1/status-lists/", "/v1/token-status-lists/", "/vct/")
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)


class SecurityPolicy:
    """The headers every response gets unless the route set them itself (encoded once: they
    are added to every response)."""

    def __init__(self, hsts_seconds: int = 0) -> None:
        common = [
            ("x-content-type-options", "nosniff"),
            # Everywhere: a page reached with ?token= must not hand it to the next site.
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),  # frame-ancestors for browsers without CSP 2
            ("cross-origin-opener-policy", "same-origin"),
        ]
        if hsts_seconds > 0:
            common.append(("strict-transport-security", f"max-age={hsts_seconds}"))
        encoded = [(n.encode(), v.encode()) for n, v in common]
        csp, corp = b"content-security-policy", b"cross-origin-resource-policy"
        self._common = encoded
        self._html = [*encoded, (csp, HTML_CSP.encode()), (corp, b"same-origin")]
        self._api = [*encoded, (csp, API_CSP.encode()), (corp, b"same-origin")]
        # Public documents: readable by verifiers on other origins (CORS without credentials).
        cors = (b"access-control-allow-origin", b"*")
        self._public = [*encoded, (csp, API_CSP.encode()), (corp, b"cross-origin"), cors]

    def apply(self, message: Message, path: str, csp: str | None = None) -> None:
        """Add the missing headers to an ``http.response.start`` message."""
        headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
        present = {name.lower() for name, _ in headers}
        if csp is not None:
            wanted = [
                *self._common,
                (b"content-security-policy", csp.encode()),
                (b"cross-origin-resource-policy", b"same-origin"),
            ]
        elif path.startswith(PUBLIC_PREFIXES):
            wanted = self._public
        else:
            kind = next((v for n, v in headers if n.lower() == b"content-type"), b"")
            wanted = self._html if kind.startswith(b"text/html") else self._api
        headers.extend(h for h in wanted if h[0] not in present)
        message["headers"] = headers


class SecurityHeadersMiddleware:
    """Adds ``SecurityPolicy``'s headers to every response, errors included: it wraps the
    whole stack (``_HardenedApp``), outside the handler of unexpected errors."""

    def __init__(self, app: ASGIApp, policy: SecurityPolicy, docs_paths: frozenset[str]) -> None:
        self.app = app
        self.policy = policy
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.docs_paths:
            await self._docs(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.policy.apply(message, path)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the (small, generated) docs page until its inline scripts are hashed."""
        start: Message | None = None
        body: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            content = b"".join(body)
            hashes = " ".join(
                "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
                for m in _INLINE_SCRIPT.finditer(content)
            )
            self.policy.apply(start, scope["path"], DOCS_CSP.format(hashes=hashes))
            await send(start)
            await send({"type": "http.response.body", "body": content, "more_body": False})

        await self.app(scope, receive, hold)


class _HardenedApp(FastAPI):
    """FastAPI with ``SecurityHeadersMiddleware`` outermost (``add_middleware`` would put it
    inside Starlette's ServerErrorMiddleware, and a 500 would go out without the headers)."""

    def __init__(self, *, security: SecurityPolicy, **kwargs: Any) -> None:
        self._security_policy = security
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        docs = frozenset(
            p for p in (self.docs_url, self.redoc_url, self.swagger_ui_oauth2_redirect_url) if p
        )
        return SecurityHeadersMiddleware(
            super().build_middleware_stack(), self._security_policy, docs
        )


# --- static files -----------------------------------------------------------------------------

STATIC_PREFIX = "/static"
IMMUTABLE = "public, max-age=31536000, immutable"


class StaticAssets(StaticFiles):
    """Static files cached for a year: their URLs carry a digest of the content
    (``install_static``), so a changed file is a new URL."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def install_static(app: FastAPI, directory: Path) -> Callable[[str], str]:
    """Serve ``directory`` under ``/static``; returns ``static_url(name)``, the file's URL with
    its content digest (for templates: ``{{ static_url("certibloc.css") }}``)."""
    app.mount(STATIC_PREFIX, StaticAssets(directory=directory), name="static")
    urls: dict[str, str] = {}

    def static_url(name: str) -> str:
        if name not in urls:
            digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()[:16]
            urls[name] = f"{STATIC_PREFIX}/{name}?v={digest}"
        return urls[name]

    return static_url
