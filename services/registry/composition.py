"""Composition root of the registry: the only place its parts are wired together."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.referential import load_all
from services.registry.api import cpf_routes, errors
from services.registry.api.routes import router
from services.registry.application import RegistryApp
from services.registry.settings import RegistrySettings
from services.registry.translation import translate
from services.runtime.http import create_app
from services.runtime.logging import configure_logging
from services.runtime.service import ServiceRuntime


def build_registry(settings: RegistrySettings) -> RegistryApp:
    load_all()  # every referential checked at start: a bad file stops the service here
    return RegistryApp(env=settings.eventsourcing_env(RegistryApp.name))


def create_http_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    registry = build_registry(settings)
    runtime = ServiceRuntime(settings=settings, app=registry, translate=translate)
    http = create_app(
        title="certibloc — registre",
        version="1.0.0",
        description="Référentiel, centres d'examen, candidats, délibérations et décisions VAE.",
        lifespan=runtime.lifespan,
        readiness=runtime.readiness,
        max_body_bytes=settings.max_body_bytes,
        metrics=runtime.metrics,
    )
    http.state.registry = registry
    http.state.runtime = runtime
    http.state.settings = settings  # the CPF routes' certifier key and CDC identifiers
    errors.install(http)
    http.include_router(router)
    http.include_router(cpf_routes.router)
    return http


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory``: settings from the environment."""
    settings = RegistrySettings()
    configure_logging(settings.service_name, settings.log_level)
    return create_http_app(settings)
