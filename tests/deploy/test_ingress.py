"""Rate limits, body sizes and TLS belong to the ingress, not the services:
deploy/k8s/50-ingress.yaml (ingress-nginx) and deploy/nginx/certibloc.conf (Compose's proxy)
route every public path with TLS and per-class limits, and the nginx config, run for real in
front of a service, answers 429 problem+json past its rate and 413 past its body size."""

from __future__ import annotations

import ipaddress
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Request

from services.runtime.http import create_app
from tests.deploy.manifests import (
    DEPLOY,
    PORTS,
    compose_file,
    config_map,
    k8s_objects,
    parse_env_file,
    rewrite,
)
from tests.support.processes import ServedApp, free_port, port_open, wait_for

NGINX_CONF = DEPLOY / "nginx" / "certibloc.conf"
ANNOTATION = "nginx.ingress.kubernetes.io/"
PUBLIC_PREFIXES = {
    "/v/",
    "/.well-known/",
    "/v1/status-lists/",
    "/v1/token-status-lists/",
    "/vct/",
    "/static/",
}


def ingresses() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects("Ingress")}


def limit(ingress: dict[str, Any], name: str) -> str:
    value: str = ingress["metadata"]["annotations"][ANNOTATION + name]
    return value


def size_bytes(text: str) -> int:
    units = {"k": 1024, "m": 1024 * 1024}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def test_every_public_route_has_tls_and_limits() -> None:
    services = {o["metadata"]["name"]: o for o in k8s_objects("Service")}
    routed: set[str] = set()
    for name, ingress in ingresses().items():
        spec = ingress["spec"]
        assert spec["ingressClassName"] == "nginx"
        for key in ("limit-rps", "limit-connections", "proxy-body-size", "force-ssl-redirect"):
            assert limit(ingress, key), (name, key)
        tls_hosts = {h for t in spec["tls"] for h in t["hosts"]}
        assert all(t["secretName"] == "certibloc-tls" for t in spec["tls"])
        for rule in spec["rules"]:
            assert rule["host"] in tls_hosts, (name, rule["host"])  # never plain HTTP
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = services[backend["name"]]
                # The http port only: /metrics is on the metrics port, never routed.
                assert backend["port"] == {"name": "http"}
                assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
                routed.add(backend["name"])
    assert routed == set(PORTS)
    base = config_map("certibloc-attestations")["ATTESTATIONS_PUBLIC_BASE_URL"]
    attestations_hosts = {r["host"] for r in ingresses()["attestations-pages"]["spec"]["rules"]}
    assert attestations_hosts == {urlsplit(base).hostname}


def test_the_did_web_document_is_served_over_tls_at_the_public_base_url() -> None:
    """The issuer's did:web is derived from ATTESTATIONS_PUBLIC_BASE_URL; a resolver fetches
    its document over https at the URL the did:web method gives (no redirect to follow): the
    Ingress and the Compose proxy route it to attestations, with the operator's certificate."""
    from services.attestations.identity import did_web, did_web_document_url

    for base in (
        config_map("certibloc-attestations")["ATTESTATIONS_PUBLIC_BASE_URL"],
        parse_env_file(DEPLOY / "env" / "attestations.env")["ATTESTATIONS_PUBLIC_BASE_URL"],
    ):
        assert urlsplit(base).scheme == "https", base
        document = urlsplit(did_web_document_url(did_web(base)))
        assert document.hostname == urlsplit(base).hostname
        assert document.path == "/.well-known/did.json"  # an origin: no path in the did:web

        # Kubernetes: the longest matching path of the host's rules (ingress-nginx's choice).
        routes = [
            (path["path"], ingress)
            for ingress in ingresses().values()
            for rule in ingress["spec"]["rules"]
            if rule["host"] == document.hostname
            for path in rule["http"]["paths"]
            if (path["pathType"] == "Prefix" and document.path.startswith(path["path"]))
            or path["path"] == document.path
        ]
        _, ingress = max(routes, key=lambda route: len(route[0]))
        assert ingress["metadata"]["name"] == "attestations-pages"
        (backend,) = {
            p["backend"]["service"]["name"]
            for r in ingress["spec"]["rules"]
            for p in r["http"]["paths"]
            if p["path"] == "/.well-known/"
        }
        assert backend == "attestations"
        assert {
            (host, tls["secretName"]) for tls in ingress["spec"]["tls"] for host in tls["hosts"]
        } >= {(document.hostname, "certibloc-tls")}
        assert limit(ingress, "force-ssl-redirect") == "true"

        # Compose's nginx: the server of that name listens with TLS and routes the path to
        # attestations through a location of its own.
        servers = re.split(r"\n(?=server \{)", NGINX_CONF.read_text())
        (server,) = [s for s in servers if f"server_name {document.hostname};" in s]
        assert "listen 443 ssl" in server and "ssl_certificate /etc/nginx/tls/tls.crt;" in server
        locations = dict(re.findall(r"location ~ (\S+) \{(.*?)\n    \}", server, re.S))
        matching = [body for regex, body in locations.items() if re.match(regex, document.path)]
        assert matching and "proxy_pass http://certibloc_attestations;" in matching[0]


def test_verification_posts_are_limited_tighter_than_pages() -> None:
    found = ingresses()
    verify, pages, registry = (
        found["attestations-verify"],
        found["attestations-pages"],
        found["registry"],
    )
    ((rule,),) = [verify["spec"]["rules"]]
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/v1/verify", "Exact")]
    paths = {p["path"] for r in pages["spec"]["rules"] for p in r["http"]["paths"]}
    assert paths == PUBLIC_PREFIXES
    for key in ("limit-rps", "limit-connections"):
        assert int(limit(verify, key)) < int(limit(pages, key)), key
    # Big enough for what the services accept themselves (they answer 413 beyond, in French).
    assert size_bytes(limit(verify, "proxy-body-size")) > 2 * 1024 * 1024
    registry_max = int(config_map("certibloc-registry")["REGISTRY_MAX_BODY_BYTES"])
    assert size_bytes(limit(registry, "proxy-body-size")) >= registry_max
    assert size_bytes(limit(pages, "proxy-body-size")) <= 64 * 1024


def nginx_zones() -> dict[str, int]:
    text = NGINX_CONF.read_text()
    return {
        zone: int(rate)
        for zone, rate in re.findall(r"zone=certibloc_(\w+):\d+m rate=(\d+)r/s", text)
    }


def test_the_compose_proxy_has_the_limits_of_the_ingress() -> None:
    zones = nginx_zones()
    found = ingresses()
    assert zones["verify"] == int(limit(found["attestations-verify"], "limit-rps"))
    assert zones["pages"] == int(limit(found["attestations-pages"], "limit-rps"))
    assert zones["api"] == int(limit(found["attestations-api"], "limit-rps"))
    assert zones["centers"] == int(limit(found["registry"], "limit-rps"))
    proxy = compose_file()["services"]["proxy"]
    assert proxy["profiles"] == ["proxy"]  # opt-in: the operator may bring their own
    assert "./nginx/certibloc.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]


# --- nginx for real -----------------------------------------------------------------------------


def self_signed(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attestations.example.org")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("attestations.example.org"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def verify_app() -> Any:
    app = create_app(title="t", version="1", description="", lifespan=None, max_body_bytes=8 << 20)
    router = APIRouter()

    @router.post("/v1/verify")
    async def verify(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    app.include_router(router)
    return app


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, str, ssl.SSLContext]]:
    """nginx with deploy/nginx/certibloc.conf in front of a service on loopback: (https base
    URL, http base URL, a TLS context trusting its certificate)."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )
    if binary is None:
        pytest.skip("nginx is not installed (Debian package nginx-light)")
    self_signed(tmp_path / "tls")
    with ServedApp(verify_app()) as backend:
        https, http = free_port(), free_port()
        upstream = f"server 127.0.0.1:{backend.port};"
        conf = rewrite(
            NGINX_CONF.read_text(),
            {
                "server registry:8101;": upstream,
                "server attestations:8102;": upstream,
                "server notifications:8103;": upstream,
                "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
                "listen [::]:443 ssl http2;\n": "",
                "listen 80;": f"listen 127.0.0.1:{http};",
                "listen [::]:80;\n": "",
                "/etc/nginx/tls/": f"{tmp_path}/tls/",
            },
        )
        (tmp_path / "certibloc.conf").write_text(conf)
        (tmp_path / "nginx.conf").write_text(
            f"daemon off;\nerror_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\n"
            "events {}\n"
            f"http {{ access_log off; include {tmp_path}/certibloc.conf; }}\n"
        )
        command = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: port_open(https) and port_open(http), timeout=10)
            trust = ssl.create_default_context(cafile=str(tmp_path / "tls" / "tls.crt"))
            yield f"https://127.0.0.1:{https}", f"http://127.0.0.1:{http}", trust
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_nginx_limits_verification_posts_with_a_problem_429(
    nginx: tuple[str, str, ssl.SSLContext],
) -> None:
    https, http, trust = nginx
    host = {"Host": "attestations.example.org"}
    assert httpx.get(f"{http}/v/x", headers=host).status_code == 308  # TLS only
    with httpx.Client(base_url=https, verify=trust, headers=host, timeout=10) as client:
        ok = client.post("/v1/verify", content=b"x" * 1024)
        assert ok.status_code == 200 and ok.json() == {"received": 1024}
        assert ok.headers["x-content-type-options"] == "nosniff"  # the service's, passed on
        assert ok.headers["strict-transport-security"] == "max-age=31536000"
        too_big = client.post("/v1/verify", content=b"x" * (3 * 1024 * 1024 + 1))
        assert too_big.status_code == 413
        # A burst of 10 beyond the rate of 2/s, then refused: well within a second.
        started = time.monotonic()
        statuses = [client.post("/v1/verify", content=b"{}").status_code for _ in range(20)]
        assert time.monotonic() - started < 5
        assert statuses.count(429) >= 5, statuses
        refused = client.post("/v1/verify", content=b"{}")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["title"] == "Trop de requêtes"
        # Pages have their own, looser, budget: still answered.
        assert client.get("/v/AAAA").status_code == 404  # the service's own answer
