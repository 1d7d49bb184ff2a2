"""Registry settings (``REGISTRY_*``, shared ones ``CERTIBLOC_*``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore", populate_by_name=True)

    service_name: str = "registry"
    port: int = 8101
