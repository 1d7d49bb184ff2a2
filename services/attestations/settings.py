"""Attestations settings (``ATTESTATIONS_*``, shared ones ``CERTIBLOC_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class AttestationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATTESTATIONS_", extra="ignore", populate_by_name=True
    )

    service_name: str = "attestations"
    port: int = 8102
    public_base_url: str = Field(
        default="http://127.0.0.1:8102",
        description="What goes into verification links, credentials and the did:web id.",
    )
    issuer_name: str = Field(
        default="certibloc",
        min_length=1,
        max_length=200,
        description="The service's own name as the issuer of the status lists (shared by every "
        "certification); each attestation names its certification's certifier.",
    )
    keys_dir: Path | None = Field(default=None, description="Default: <var>/keys/attestations")
    pdf_dir: Path | None = Field(default=None, description="PDF cache; default <var>/pdf")
    download_token_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CERTIBLOC_DOWNLOAD_TOKEN_SECRET", "download_token_secret"),
        description="Hex secret shared with the notifications service; default: a file "
        "<var>/keys/download-token.secret created on first start.",
    )

    verify_jws_max_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest credential POST /v1/verify reads."
    )
    verify_pdf_max_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest PDF POST /v1/verify reads."
    )
    verify_pdf_workers: int = Field(
        default=2, ge=1, le=64, description="Worker processes that read uploaded PDFs."
    )
    verify_pdf_time_limit_seconds: float = Field(
        default=3.0, gt=0, description="Wall time one uploaded PDF may cost a worker."
    )
    verify_pdf_memory_limit_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Address space of a PDF worker (RLIMIT_AS); 0: no limit.",
    )
    verify_pdf_max_waiting: int = Field(
        default=16, ge=0, description="PDFs waiting for a worker beyond which 429 is answered."
    )

    @property
    def signing_keys_dir(self) -> Path:
        return self.keys_dir or self.var_dir / "keys" / "attestations"

    @property
    def pdf_identity_dir(self) -> Path:
        return self.signing_keys_dir / "pdf"

    @property
    def pdf_cache_dir(self) -> Path:
        return self.pdf_dir or self.var_dir / "pdf"

    @property
    def download_secret_file(self) -> Path:
        return self.var_dir / "keys" / "download-token.secret"
