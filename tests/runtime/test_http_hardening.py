"""HTTP hardening of the shared runtime, over real HTTP: security headers on every response
(pages, JSON, problems, errors the app did not expect), titles that match their status, and
``/metrics`` absent from the public port (served on the internal one: test_metrics.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from services.runtime import problems
from services.runtime.http import API_CSP, HTML_CSP, create_app
from services.runtime.problems import TITLES, Problem, title_of
from tests.attestations.harness import Attestations, serve_both
from tests.registry.harness import Registry, candidate, full_lines, pv
from tests.runtime.test_metrics import metrics_url, sample
from tests.support.processes import NatsServer, ServedApp, eventually

MAX_BODY = 4096

SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


class Item(BaseModel):
    name: str


def sample_app(hsts_seconds: int = 0, ready: bool = True) -> FastAPI:
    async def readiness() -> str | None:
        return None if ready else "NATS injoignable"

    app = create_app(
        title="t",
        version="1",
        description="",
        lifespan=None,
        readiness=[readiness],
        max_body_bytes=MAX_BODY,
        hsts_seconds=hsts_seconds,
    )
    router = APIRouter()

    @router.get("/json")
    async def as_json() -> dict[str, str]:
        return {"ok": "oui"}

    @router.post("/items")
    async def create(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @router.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return "<!doctype html><title>p</title><p>page</p>"

    @router.get("/pdf")
    async def pdf() -> Response:
        return Response(b"%PDF-1.7\n%%EOF\n", media_type="application/pdf")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug the client must not see")

    @router.get("/own")
    async def own() -> Response:
        # A route that chose its own policy keeps it.
        return JSONResponse(
            {},
            headers={"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "X"},
        )

    @router.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, list[str]]:
        return {"keys": []}

    @router.get("/problem/{status}")
    async def problem(status: int) -> None:
        raise Problem("détail", status=status)

    app.include_router(router)
    return app


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    with ServedApp(sample_app()) as server:
        yield server.url


@pytest.fixture(scope="module")
def http(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, timeout=10) as client:
        yield client


def assert_hardened(
    response: httpx.Response, csp: str = API_CSP, corp: str = "same-origin"
) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    assert response.headers["content-security-policy"] == csp, response.request.url
    assert response.headers["cross-origin-resource-policy"] == corp, response.request.url
    assert "strict-transport-security" not in response.headers  # off unless configured
    assert len(response.headers.get_list("content-security-policy")) == 1


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] == TITLES[status], body
    assert_hardened(response)
    return body


def test_json_html_and_pdf_responses_carry_the_security_headers(http: httpx.Client) -> None:
    assert_hardened(http.get("/json"))
    page = http.get("/page")
    assert_hardened(page, csp=HTML_CSP)
    assert "script-src" not in HTML_CSP and "unsafe-inline" not in HTML_CSP
    assert "frame-ancestors 'none'" in HTML_CSP
    pdf = http.get("/pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert_hardened(pdf)
    assert_hardened(http.get("/healthz"))


def test_errors_carry_them_too_with_a_title_that_matches_their_status(
    http: httpx.Client, served: str
) -> None:
    assert_problem(http.get("/nowhere"), 404)
    not_allowed = http.delete("/json")
    assert_problem(not_allowed, 405)
    assert not_allowed.headers["allow"] == "GET"  # RFC 9110: a 405 says what is allowed
    assert_problem(
        http.post("/items", content=b"{", headers={"content-type": "application/json"}), 400
    )
    assert_problem(http.post("/items", json={"name": 3}), 422)
    # Declared too large: refused before reading; streamed too large: refused while reading.
    assert_problem(http.post("/items", content=b"x" * (MAX_BODY + 1)), 413)

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"x" * 1024

    assert_problem(http.post("/items", content=chunks()), 413)
    # Starlette re-raises an unexpected error once answered: uvicorn then drops that
    # connection, so on a connection of its own.
    body = assert_problem(httpx.get(f"{served}/boom", timeout=10), 500)
    assert "bug" not in body["detail"]
    for status in (401, 403, 409, 415, 429, 500, 503):
        assert_problem(http.get(f"/problem/{status}"), status)


def test_metrics_are_not_on_the_public_port(http: httpx.Client) -> None:
    for method in ("GET", "HEAD"):
        response = http.request(method, "/metrics")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert "certibloc_http" not in http.get("/metrics").text


def test_readyz_red_is_a_503_service_unavailable() -> None:
    with ServedApp(sample_app(ready=False)) as server:
        response = httpx.get(f"{server.url}/readyz", timeout=10)
    body = assert_problem(response, 503)
    assert body["title"] == "Service indisponible"
    assert body["problems"] == ["NATS injoignable"]


def test_a_route_keeps_the_headers_it_set(http: httpx.Client) -> None:
    response = http.get("/own")
    assert response.headers["content-security-policy"] == "default-src 'self'"
    assert response.headers["x-frame-options"] == "X"
    assert response.headers["x-content-type-options"] == "nosniff"  # the others still added


def test_public_documents_are_readable_from_other_origins(http: httpx.Client) -> None:
    response = http.get("/.well-known/jwks.json", headers={"Origin": "https://verifier.example"})
    assert_hardened(response, corp="cross-origin")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    # Anything else stays same-origin, with no CORS.
    assert "access-control-allow-origin" not in http.get("/json").headers


def test_hsts_only_when_configured() -> None:
    with ServedApp(sample_app(hsts_seconds=31536000)) as server:
        response = httpx.get(f"{server.url}/json", timeout=10)
        error = httpx.get(f"{server.url}/boom", timeout=10)
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert error.headers["strict-transport-security"] == "max-age=31536000"


def test_the_docs_run_their_inline_script_by_hash_only(http: httpx.Client) -> None:
    """Swagger UI's one inline script is allowed by its digest; nothing inline otherwise."""
    docs = http.get("/docs")
    assert docs.status_code == 200
    csp = docs.headers["content-security-policy"]
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert inline
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_src
    assert "frame-ancestors 'none'" in csp
    assert docs.headers["x-content-type-options"] == "nosniff"
    assert int(docs.headers["content-length"]) == len(docs.content)
    redoc = http.get("/redoc")
    assert (
        redoc.status_code == 200
        and "frame-ancestors 'none'" in redoc.headers["content-security-policy"]
    )


def all_problem_classes() -> list[type[Problem]]:
    """Problem and every subclass defined anywhere in the services."""
    import services.attestations.composition
    import services.notifications.composition
    import services.registry.composition  # noqa: F401  # their Problem subclasses

    found: list[type[Problem]] = []
    pending: list[type[Problem]] = [Problem]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def make(cls: type[Problem], status: int | None = None) -> Problem:
    """An instance of ``cls`` built by Problem's own constructor (some subclasses take other
    arguments and pass their detail up)."""
    problem = cls.__new__(cls)
    Problem.__init__(problem, "détail", status=status)
    return problem


def test_every_problem_class_has_the_title_of_its_status() -> None:
    classes = all_problem_classes()
    assert {problems.NotFound, problems.InternalError, problems.Unavailable} <= set(classes)
    for cls in classes:
        problem = make(cls)
        named = cls.__dict__.get("title")
        if named is None:  # not named by the class: the status's own
            assert problem.title == title_of(problem.status), cls
        else:  # a title of its own, never another status's
            others = {t for status, t in TITLES.items() if status != cls.status}
            assert named not in others, (cls, named)
        # Another status passed in: that status's title, never the class's.
        for status in (413, 500, 503):
            if status != cls.status:
                assert make(cls, status).title == TITLES[status], (cls, status)
    assert Problem("x", status=500).title == "Erreur interne"
    assert Problem("x", status=503).title == "Service indisponible"
    assert Problem("x").title == "Requête invalide"
    assert title_of(418) == TITLES[400] and title_of(599) == TITLES[500]


# --- the attestations service, served for real -----------------------------------------------


@pytest.fixture
def attestations_pair(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> Iterator[tuple[Registry, Attestations]]:
    with serve_both(tmp_path, nats_server.url) as both:
        yield both


INLINE_STYLE = re.compile(r"<style|\sstyle\s*=|<script|\son[a-z]+\s*=", re.IGNORECASE)


async def test_attestation_pages_documents_and_pdf_are_hardened(
    attestations_pair: tuple[Registry, Attestations],
) -> None:
    registry, att = attestations_pair
    auth = registry.auth()
    async with httpx.AsyncClient(timeout=60) as http:
        assert (
            await http.post(f"{registry.url}/v1/candidates", json=candidate("H1"), headers=auth)
        ).status_code == 201
        posted = await http.post(
            f"{registry.url}/v1/deliberations", json=pv(full_lines("H1")), headers=auth
        )
        assert posted.status_code == 201

        async def listed() -> list[dict[str, Any]]:
            r = await http.get(
                f"{att.url}/v1/attestations", params={"candidate_number": "H1"}, headers=auth
            )
            return r.json()["attestations"] if r.status_code == 200 else []

        (first, *_) = await eventually(listed, 30, "the attestations issued")

        # The verification page: no script, no inline style; its stylesheet is served.
        page = await http.get(first["verify_url"])
        assert page.status_code == 200 and "Attestation valide" in page.text
        assert_hardened(page, csp=HTML_CSP)
        assert not INLINE_STYLE.search(page.text), INLINE_STYLE.search(page.text)
        (css_url,) = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
        assert css_url.startswith("/static/certibloc.css?v=")
        css = await http.get(f"{att.url}{css_url}")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert css.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in css.headers["cache-control"]
        assert ".verdict.valide" in css.text  # the styles the page had inline
        assert (await http.get(f"{att.url}/static/nothing.css")).status_code == 404
        unknown = await http.get(f"{att.url}/v/AAAAAAAAAAAAAAAAAAAAAA")
        assert unknown.status_code == 404
        assert_hardened(unknown, csp=HTML_CSP)
        assert not INLINE_STYLE.search(unknown.text)

        # JSON, problem+json, the PDF: the minimal policy.
        as_json = await http.get(first["verify_url"], headers={"Accept": "application/json"})
        assert as_json.status_code == 200
        assert_hardened(as_json)
        missing = await http.get(
            f"{att.url}/v/AAAAAAAAAAAAAAAAAAAAAA", headers={"Accept": "application/json"}
        )
        assert_problem(missing, 404)
        pdf = await http.get(f"{att.url}/v1/attestations/{first['id']}/pdf", headers=auth)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert_hardened(pdf)

        # What verifiers on other origins fetch stays readable there.
        for path in ("/.well-known/jwks.json", "/.well-known/did.json"):
            document = await http.get(f"{att.url}{path}", headers={"Origin": "https://v.example"})
            assert document.status_code == 200
            assert_hardened(document, corp="cross-origin")
            assert document.headers["access-control-allow-origin"] == "*"

        # /metrics: 404 on the public port, served on the internal one.
        assert_problem(await http.get(f"{att.url}/metrics"), 404)
        internal = await http.get(metrics_url(att.url))
        assert internal.status_code == 200
        assert (sample(internal.text, "certibloc_attestations_issued_total") or 0) >= 1
        assert sample(internal.text, "certibloc_http_requests_total", route="/v/{attestation_id}")
