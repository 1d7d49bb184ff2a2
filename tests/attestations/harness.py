"""Registry and attestations served side by side (real HTTP, real NATS, their own stores)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.attestations.application import AttestationsApp
from services.attestations.composition import create_http_app
from services.attestations.settings import AttestationsSettings
from services.runtime.secrets import load_or_create_secret
from tests.registry.harness import Registry, serve_registry
from tests.support.processes import ServedApp, free_port


@dataclass
class Attestations:
    url: str
    app: AttestationsApp
    var: Path
    download_secret: bytes


@contextmanager
def serve_attestations(
    var_dir: Path, nats_url: str, tls: Path | None = None, **settings: Any
) -> Iterator[Attestations]:
    """``tls``: a directory with ``tls.crt`` and ``tls.key`` (a certificate for localhost):
    served over https, its public base URL (so its did:web) ``https://localhost:<port>``,
    which a did:web resolver turns into ``https://localhost:<port>/.well-known/did.json``."""
    port = free_port()
    config = AttestationsSettings(
        var_dir=var_dir,
        nats_url=nats_url,
        port=port,
        public_base_url=f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}",
        relay_idle_seconds=0.02,
        **settings,
    )
    http = create_http_app(config)
    served = ServedApp(http, port=port, tls=(tls / "tls.crt", tls / "tls.key") if tls else None)
    with served:
        yield Attestations(
            config.public_base_url if tls else served.url,
            http.state.context.app,
            var_dir,
            bytes.fromhex(config.download_token_secret.get_secret_value())
            if config.download_token_secret
            else load_or_create_secret(config.download_secret_file),
        )


@contextmanager
def serve_both(tmp: Path, nats_url: str) -> Iterator[tuple[Registry, Attestations]]:
    with (
        serve_registry(tmp / "registry", nats_url) as registry,
        serve_attestations(tmp / "attestations", nats_url) as attestations,
    ):
        yield registry, attestations
