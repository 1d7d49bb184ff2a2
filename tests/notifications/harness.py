"""The three services side by side, a real SMTP sink and a real webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from services.notifications.application import NotificationsApp
from services.notifications.composition import create_http_app
from services.notifications.destinations import Destinations, Resolver
from services.notifications.settings import NotificationsSettings
from services.notifications.sink import start_sink
from tests.attestations.harness import Attestations, serve_attestations
from tests.registry.harness import Registry, serve_registry
from tests.support.processes import ServedApp, free_port

SECRET = "3f" * 32  # shared download-token secret of this test deployment
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"  # where the tests' webhook receivers listen


@dataclass
class Notifications:
    url: str
    app: NotificationsApp
    mail_dir: Path
    destinations: Destinations  # the service's webhook policy (its resolver can be swapped)

    def mails(self) -> list[Path]:
        return sorted(self.mail_dir.glob("*.eml"))


@contextmanager
def serve_notifications(
    var_dir: Path,
    nats_url: str,
    attestations_url: str,
    resolver: Resolver | None = None,
    **settings: Any,
) -> Iterator[Notifications]:
    settings.setdefault("webhook_allowed_networks", LOOPBACK_NETWORKS)
    settings.setdefault("port", free_port())  # and the metrics port + 1000: not the default's
    mail_dir = var_dir / "mail"
    controller, smtp_port = start_sink(mail_dir)
    config = NotificationsSettings(
        var_dir=var_dir,
        nats_url=nats_url,
        attestations_url=attestations_url,
        download_token_secret=SecretStr(SECRET),
        smtp_port=smtp_port,
        relay_idle_seconds=0.02,
        backoff_base=0.05,
        **settings,
    )
    http = create_http_app(config)
    destinations: Destinations = http.state.webhook_destinations
    if resolver is not None:
        destinations.resolver = resolver
    try:
        with ServedApp(http, port=config.port) as served:
            yield Notifications(served.url, http.state.notifications, mail_dir, destinations)
    finally:
        controller.stop()


@contextmanager
def serve_all(
    tmp: Path, nats_url: str, **settings: Any
) -> Iterator[tuple[Registry, Attestations, Notifications]]:
    with (
        serve_registry(tmp / "registry", nats_url) as registry,
        serve_attestations(
            tmp / "attestations", nats_url, download_token_secret=SecretStr(SECRET)
        ) as attestations,
        serve_notifications(tmp / "notifications", nats_url, attestations.url, **settings) as n,
    ):
        yield registry, attestations, n
