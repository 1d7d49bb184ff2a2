"""Composition root of the attestations service."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter

from contracts.referential import load_all
from contracts.subjects import durable_of
from services.attestations import wording
from services.attestations.api.oid4vci import router as oid4vci_router
from services.attestations.api.routes import Context, router
from services.attestations.api.sd_jwt import router as sd_jwt_router
from services.attestations.api.shares import router as shares_router
from services.attestations.api.space import router as space_router
from services.attestations.application import AttestationsApp, Links
from services.attestations.data_integrity_forms import DataIntegrityForms
from services.attestations.domain.aggregates import Attestation
from services.attestations.domain.jose import SigningKey
from services.attestations.identity import Issuers
from services.attestations.keys import KeyStore
from services.attestations.pdf import CacheCipher, PdfSigner
from services.attestations.pdf_inspection import PdfInspector, VerifyLimits
from services.attestations.settings import AttestationsSettings
from services.attestations.token_status import TokenStatusLists
from services.attestations.translation import translator
from services.runtime.consumer import ConsumerSpec
from services.runtime.http import create_app, install_static
from services.runtime.logging import configure_logging
from services.runtime.metrics import Metrics
from services.runtime.secrets import load_or_create_secret, load_store_key
from services.runtime.service import ServiceRuntime


class ActiveKey:
    """The active signing key, re-read when an operator rotates it (no restart needed)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._key = store.ensure()
        self._checked = time.monotonic()

    def __call__(self) -> SigningKey:
        now = time.monotonic()
        if now - self._checked > 1.0:
            self._checked = now
            kid = self.store.active_kid()
            if kid != self._key.kid:
                self._key = self.store.load(kid)
        return self._key

    def jwks(self) -> dict[str, Any]:
        return self.store.public_jwks()


def build_attestations(settings: AttestationsSettings) -> tuple[AttestationsApp, ActiveKey]:
    load_all()  # every referential checked at start: a bad file stops the service here
    base = settings.public_base_url.rstrip("/")
    issuers = Issuers.of_service(base, settings.issuer_name)
    # Keys are published (kid, JWK Set, DID document) as verification methods of the did:web.
    keys = ActiveKey(KeyStore(settings.signing_keys_dir, did=issuers.did))
    app = AttestationsApp(
        env=settings.eventsourcing_env(AttestationsApp.name),
        issuers=issuers,
        links=Links(base),
        signing_key=keys,
        partitions=settings.partitions,
    )
    return app, keys


def create_http_app(settings: AttestationsSettings | None = None) -> FastAPI:
    settings = settings or AttestationsSettings()
    app, keys = build_attestations(settings)
    metrics = Metrics()
    count_attestations(app, metrics)

    runtime = ServiceRuntime(
        settings=settings,
        app=app,
        translate=translator(app.links.verify),
        consumers=consumers(app),
        metrics=metrics,
    )
    pdf_signer = PdfSigner.load_or_create(settings.pdf_identity_dir)
    inspector = PdfInspector(
        pdf_signer.certificate_pem,
        workers=settings.verify_pdf_workers,
        time_limit=settings.verify_pdf_time_limit_seconds,
        memory_bytes=settings.verify_pdf_memory_limit_bytes,
        max_waiting=settings.verify_pdf_max_waiting,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The PDF workers live as long as the app: started before it serves, stopped after.
        await inspector.start()
        try:
            async with runtime.lifespan(app):
                yield
        finally:
            await inspector.close()

    http = create_app(
        title="certibloc — attestations",
        version="1.0.0",
        description="Attestations signées (W3C VC 2.0 / Open Badges 3.0), vérification, PDF.",
        lifespan=lifespan,
        readiness=runtime.readiness,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
    )
    secret = settings.download_token_secret
    # The pages' stylesheet, served by the service (their CSP allows no inline style); the
    # pages in French or English, from the catalogues read here, once.
    static_url = install_static(http, _templates_dir().parent / "static")
    pages = wording.page_templates(wording.catalogues(), static_url)
    http.state.context = Context(
        app=app,
        pages=pages,
        jwks=keys.jwks,
        pdf_signer=pdf_signer,
        pdf_cache=settings.pdf_cache_dir,
        pdf_cipher=pdf_cache_cipher(settings),
        download_secret=bytes.fromhex(secret.get_secret_value())
        if secret
        else load_or_create_secret(settings.download_secret_file),
    )
    http.state.runtime = runtime
    # Read by POST /v1/verify (kept off Context, which the download-token work also changes).
    http.state.pdf_inspector = inspector
    http.state.verify_limits = VerifyLimits(
        jws_bytes=settings.verify_jws_max_bytes, pdf_bytes=settings.verify_pdf_max_bytes
    )
    # The Data Integrity form of the credentials and status lists, made on request (kept off
    # Context too): signed with the key whose kid the stored token names.
    http.state.data_integrity = DataIntegrityForms(keys.store.load)
    # The SD-JWT VC form's Token Status Lists (read from the same StatusList aggregates).
    http.state.token_status = TokenStatusLists(app)
    http.include_router(router)
    http.include_router(sd_jwt_router)
    http.include_router(space_router)
    http.include_router(shares_router)
    http.include_router(oid4vci_router)
    return http


def pdf_cache_cipher(settings: AttestationsSettings) -> CacheCipher:
    """The cached PDFs' cipher, keyed from the event store's key (the same file)."""
    path, provided = settings.store_key_path(AttestationsApp.name)
    return CacheCipher(base64.b64decode(load_store_key(path, create=not provided)))


def consumers(app: AttestationsApp) -> list[ConsumerSpec]:
    return [
        ConsumerSpec(
            durable_of("attestations", "registry"),
            app.registry_handlers(),
            before_commit=app.before_commit,
        )
    ]


def count_attestations(app: AttestationsApp, metrics: Metrics) -> None:
    """Attestations issued and revoked, counted once committed (whoever wrote them)."""
    issued = Counter(
        "certibloc_attestations_issued",
        "Attestations signed and stored.",
        registry=metrics.registry,
    )
    revoked = Counter(
        "certibloc_attestations_revoked",
        "Attestations revoked.",
        registry=metrics.registry,
    )

    def count(events: Sequence[object]) -> None:
        n_issued = n_revoked = 0
        for e in events:
            if isinstance(e, Attestation.Issued):
                n_issued += 1
            elif isinstance(e, Attestation.Revoked):
                n_revoked += 1
        if n_issued:
            issued.inc(n_issued)
        if n_revoked:
            revoked.inc(n_revoked)

    app.on_recorded(count)


def _templates_dir() -> Path:
    return Path(str(resources.files("services.attestations") / "templates"))


def app_factory() -> FastAPI:
    settings = AttestationsSettings()
    configure_logging(settings.service_name, settings.log_level)
    return create_http_app(settings)
