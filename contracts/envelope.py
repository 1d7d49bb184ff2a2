"""The CloudEvents 1.0 envelope (structured JSON mode) every certibloc event travels in.

Two extension attributes carry the producer's log position so consumers can apply each
event exactly once and in order:

- ``position``: strictly increasing per source (``notification_id * 1000 + index``, one
  stored notification may yield several published events);
- ``previous``: the position of the event published just before it by the same source
  (0 for the first). A consumer that has applied up to ``previous`` knows nothing is missing.

``traceparent`` and ``tracestate`` (the CloudEvents distributed tracing extension) carry the
W3C trace context of what caused the event; the same values travel in the NATS headers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SPEC_VERSION: Final = "1.0"
EVENTS_PER_NOTIFICATION = 1000


def message_position(notification_id: int, index: int) -> int:
    """Position of the ``index``-th event published for a stored notification."""
    if not 0 <= index < EVENTS_PER_NOTIFICATION:
        raise ValueError(f"a notification may yield at most {EVENTS_PER_NOTIFICATION} events")
    return notification_id * EVENTS_PER_NOTIFICATION + index


def notification_of(position: int) -> int:
    return position // EVENTS_PER_NOTIFICATION


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON form."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = SPEC_VERSION
    id: str = Field(description="Unique within its source.")
    source: str = Field(description="URI reference naming the producing service.")
    type: str = Field(description="Versioned type, fr.certibloc.<service>.<event>.v<N>.")
    subject: str | None = None
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    position: int = Field(ge=1, description="Producer log position (extension attribute).")
    previous: int = Field(ge=0, description="Position of the source's preceding event.")
    traceparent: str | None = Field(
        default=None, description="W3C trace context (CloudEvents distributed tracing extension)."
    )
    tracestate: str | None = Field(
        default=None,
        description="W3C trace state, vendor-specific (CloudEvents distributed tracing extension).",
    )
    data: dict[str, Any]
