"""Composition root of the notifications service."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from fastapi import FastAPI
from nats.js import JetStreamContext
from prometheus_client import Counter

from contracts.referential import load_all
from contracts.subjects import durable_of
from services.notifications.api import router
from services.notifications.application import NotificationsApp
from services.notifications.destinations import Destinations
from services.notifications.dispatcher import Dispatcher
from services.notifications.domain import Notification
from services.notifications.settings import NotificationsSettings
from services.notifications.smtp import SmtpPool, SmtpSettings
from services.notifications.translation import translate
from services.runtime.consumer import ConsumerSpec
from services.runtime.http import create_app
from services.runtime.logging import configure_logging
from services.runtime.metrics import Metrics
from services.runtime.secrets import load_or_create_secret
from services.runtime.service import ServiceRuntime


def build_notifications(settings: NotificationsSettings) -> NotificationsApp:
    secret = settings.download_token_secret
    return NotificationsApp(
        env=settings.eventsourcing_env(NotificationsApp.name),
        attestations_url=settings.attestations_url,
        download_secret=bytes.fromhex(secret.get_secret_value())
        if secret
        else load_or_create_secret(settings.download_secret_file),
        sender=settings.mail_from,
        mail_domain=settings.mail_domain,
    )


def smtp_settings(settings: NotificationsSettings) -> SmtpSettings:
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        use_tls=settings.smtp_tls,
        timeout=settings.smtp_timeout,
    )


def create_http_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    load_all()  # every referential checked at start: a bad file stops the service here
    app = build_notifications(settings)
    metrics = Metrics()
    count_deliveries(app, metrics)
    http: FastAPI
    # One policy for registration and delivery (tests swap its resolver).
    destinations = Destinations(settings.webhook_networks, resolve_timeout=settings.webhook_timeout)

    async def dispatch(_: JetStreamContext, stop: asyncio.Event) -> None:
        smtp = SmtpPool(smtp_settings(settings), size=settings.smtp_connections)
        async with destinations.client(settings.webhook_timeout) as client:
            dispatcher = Dispatcher(
                app,
                smtp,
                client,
                destinations=destinations,
                concurrency=settings.dispatch_concurrency,
                claim_timeout=settings.claim_timeout,
                max_attempts=settings.max_attempts,
                backoff_base=settings.backoff_base,
                webhook_timeout=settings.webhook_timeout,
                worker=f"{os.uname().nodename}:{os.getpid()}",
            )
            http.state.dispatcher = dispatcher
            try:
                await dispatcher.run(stop)
            finally:
                await smtp.close()

    runtime = ServiceRuntime(
        settings=settings,
        app=app,
        translate=translate,
        consumers=consumers(app),
        workers=[dispatch],
        metrics=metrics,
    )
    http = create_app(
        title="certibloc — notifications",
        version="1.0.0",
        description="E-mails aux candidats et webhooks signés aux centres d'examen.",
        lifespan=runtime.lifespan,
        readiness=runtime.readiness,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
    )
    http.state.notifications = app
    http.state.dispatcher = None
    http.state.webhook_destinations = destinations
    http.state.runtime = runtime
    http.include_router(router)
    return http


def consumers(app: NotificationsApp) -> list[ConsumerSpec]:
    return [
        ConsumerSpec(
            durable_of("notifications", "registry"),
            app.registry_handlers(),
            before_commit=app.before_commit,
        ),
        ConsumerSpec(
            durable_of("notifications", "attestations"),
            app.attestations_handlers(),
            before_commit=app.before_commit,
        ),
    ]


OUTCOMES: dict[type[object], str] = {
    Notification.Sent: "sent",
    Notification.Failed: "failed",
    Notification.GaveUp: "gave_up",
}


def count_deliveries(app: NotificationsApp, metrics: Metrics) -> None:
    """Delivery outcomes by channel, counted once recorded (whichever path recorded them)."""
    deliveries = Counter(
        "certibloc_notifications_deliveries",
        "Delivery attempts recorded, by channel (email, webhook) and outcome "
        "(sent, failed: retried later, gave_up).",
        ["channel", "outcome"],
        registry=metrics.registry,
    )
    for channel in ("email", "webhook"):
        for outcome in OUTCOMES.values():
            deliveries.labels(channel, outcome)  # every series from 0

    def count(events: Sequence[object]) -> None:
        for e in events:
            outcome = OUTCOMES.get(type(e))
            if outcome is not None:
                deliveries.labels(getattr(e, "channel", "unknown"), outcome).inc()

    app.on_recorded(count)


def app_factory() -> FastAPI:
    settings = NotificationsSettings()
    configure_logging(settings.service_name, settings.log_level)
    return create_http_app(settings)
