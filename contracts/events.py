"""The base of every published event model: its versioned CloudEvents ``type``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from contracts.subjects import event_type


class ContractEvent(BaseModel):
    """A published event's ``data``; subclasses name their service, event and version."""

    model_config = ConfigDict(frozen=True)
    SERVICE: ClassVar[str]
    NAME: ClassVar[str]
    VERSION: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return event_type(cls.SERVICE, cls.NAME, cls.VERSION)
