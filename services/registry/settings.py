"""Registry settings (``REGISTRY_*``, shared ones ``CERTIBLOC_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings

# Placeholders for the identifiers the Caisse des Dépôts gives a certifier: a flux made with
# them is schema-valid but no CDC portal takes it (the commands say so when they are used).
CPF_PLACEHOLDER_CLIENT_ID = "00000000"
CPF_PLACEHOLDER_CONTRACT_ID = "A-RENSEIGNER"


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore", populate_by_name=True)

    service_name: str = "registry"
    port: int = 8101
    certifier_key_file: Path | None = Field(
        default=None,
        description="File holding the certifier's API key (the CPF routes' only key); default "
        "<var_dir>/keys/certifier.key, written by ``issue-certifier-key``. Absent: the CPF "
        "routes refuse every request.",
    )
    cpf_client_id: str = Field(
        default=CPF_PLACEHOLDER_CLIENT_ID,
        min_length=8,
        max_length=8,
        description="The certifier's idClient at the Caisse des Dépôts (8 characters).",
    )
    cpf_contract_id: str = Field(
        default=CPF_PLACEHOLDER_CONTRACT_ID,
        min_length=1,
        max_length=20,
        description="The certifier's idContrat at the Caisse des Dépôts (20 characters at most).",
    )

    @property
    def certifier_key_path(self) -> Path:
        return self.certifier_key_file or self.var_dir / "keys" / "certifier.key"

    @property
    def cpf_placeholders(self) -> bool:
        return (
            self.cpf_client_id == CPF_PLACEHOLDER_CLIENT_ID
            or self.cpf_contract_id == CPF_PLACEHOLDER_CONTRACT_ID
        )
