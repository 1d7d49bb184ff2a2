"""Notifications settings (``NOTIFICATIONS_*``, shared ones ``CERTIBLOC_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.notifications.destinations import IPNetwork, parse_networks
from services.runtime.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATIONS_", extra="ignore", populate_by_name=True
    )

    service_name: str = "notifications"
    port: int = 8103
    attestations_url: str = Field(
        default="http://127.0.0.1:8102",
        description="Public base URL of the attestations service, for download links.",
    )
    download_token_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CERTIBLOC_DOWNLOAD_TOKEN_SECRET", "download_token_secret"),
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_connections: int = Field(default=8, ge=1, le=64)
    smtp_timeout: float = Field(default=10.0, gt=0)
    mail_from: str = "certibloc <no-reply@certibloc.localhost>"
    mail_domain: str = "certibloc.localhost"
    dispatch_concurrency: int = Field(default=64, ge=1)
    claim_timeout: float = Field(
        default=30.0, gt=0, description="After this, a claim left by a crashed sender is retaken."
    )
    max_attempts: int = Field(default=8, ge=1)
    backoff_base: float = Field(default=1.0, gt=0, description="Seconds; doubles per attempt.")
    webhook_timeout: float = Field(default=5.0, gt=0)
    webhook_allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs webhooks may reach although loopback, private or "
        "otherwise internal, and over plain http; empty: only public https destinations.",
    )
    mail_dir: Path | None = Field(default=None, description="Dev SMTP sink folder; <var>/mail")
    sink_port: int = 2525

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)  # a typo fails the start, not every delivery
        return value

    @property
    def webhook_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.webhook_allowed_networks)

    @property
    def download_secret_file(self) -> Path:
        return self.var_dir / "keys" / "download-token.secret"

    @property
    def sink_dir(self) -> Path:
        return self.mail_dir or self.var_dir / "mail"
