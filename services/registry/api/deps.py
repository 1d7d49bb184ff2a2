"""Request-scoped dependencies: the application and the authenticated exam center."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.registry.application import RegistryApp
from services.runtime.auth import bearer_center


async def get_registry(request: Request) -> RegistryApp:
    registry: RegistryApp = request.app.state.registry
    return registry


Registry = Annotated[RegistryApp, Depends(get_registry)]
Center = Annotated[str, Depends(bearer_center(lambda r: r.app.state.registry.authenticate))]
