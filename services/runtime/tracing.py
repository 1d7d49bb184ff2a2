"""W3C Trace Context (``traceparent``/``tracestate``) carried from HTTP requests through stored
events and NATS messages, so one request can be followed across the three services.

Nothing is recorded or exported here: these are ids for correlation (logs carry ``trace_id``
and ``span_id``), and any tracing-aware tool downstream sees a valid context.

- An HTTP request continues the caller's trace (its ``traceparent`` header) with a new span,
  or starts a new trace.
- Every domain event stored while a context is current is stamped with it (two extra keys of
  its stored state, see ``stamp``): events leave a service only through its outbox relay,
  which reads them later, so the context must travel with the stored event.
- The relay puts the stamp on the CloudEvent (distributed tracing extension: ``traceparent``,
  ``tracestate``) and in the NATS headers; a consumer handles each message in a child span
  of it, so events produced downstream carry the same trace id with a new span id.

A ``traceparent`` is ``version-traceid-spanid-flags``: ``00-<32 hex>-<16 hex>-<2 hex>``.
"""

from __future__ import annotations

import contextvars
import random
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Keys of a stored event's state (its __dict__): ignored by eventsourcing when it applies the
# event (it passes only the parameters a method names), read back by the relay.
STAMP = "_traceparent"
STAMP_STATE = "_tracestate"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRACESTATE = re.compile(r"^[\x20-\x7e]*$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
MAX_TRACESTATE = 512


class TraceContext(NamedTuple):  # a tuple: built on every request, it must be cheap
    trace_id: str
    span_id: str
    flags: str = "00"
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """A new span of the same trace (flags and tracestate carried over)."""
        return TraceContext(self.trace_id, new_span_id(), self.flags, self.tracestate)


# Ids must be unique, not secret: the stdlib generator (reseeded in forked children) costs no
# system call, where os.urandom per event was ~4 % of a busy consumer's time.
def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"  # all zeros is invalid


def new_trace() -> TraceContext:
    """A new root; not sampled (nothing is recorded here)."""
    return TraceContext(f"{random.getrandbits(128) or 1:032x}", new_span_id())


def parse(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The context a ``traceparent`` header names, or ``None`` if it is absent or invalid.

    Follows W3C Trace Context level 1: version ``ff`` and all-zero ids are invalid; version
    ``00`` is exactly 55 characters; a later version may append fields (ignored). An invalid
    ``tracestate`` is dropped, never the ``traceparent`` with it.
    """
    if not traceparent:
        return None
    text = traceparent.strip()
    found = _TRACEPARENT.match(text)
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, flags, _valid_tracestate(tracestate))


def _valid_tracestate(tracestate: str | None) -> str | None:
    if not tracestate:
        return None
    text = tracestate.strip()
    if not text or len(text) > MAX_TRACESTATE or not _TRACESTATE.match(text):
        return None
    return text


# --- the current context -------------------------------------------------------------------

_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "trace_context", default=None
)


def current() -> TraceContext | None:
    return _current.get()


def current_traceparent() -> str | None:
    ctx = _current.get()
    return ctx.traceparent if ctx is not None else None


def activate(ctx: TraceContext | None) -> contextvars.Token[TraceContext | None]:
    return _current.set(ctx)


def deactivate(token: contextvars.Token[TraceContext | None]) -> None:
    _current.reset(token)


@contextmanager
def continued(traceparent: str | None, tracestate: str | None = None) -> Iterator[TraceContext]:
    """Run in a child span of ``traceparent`` (a new trace when it is absent or invalid)."""
    parent = parse(traceparent, tracestate)
    ctx = parent.child() if parent is not None else new_trace()
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


# --- stamping stored events ----------------------------------------------------------------


def stamp(domain_event: object, ctx: TraceContext) -> None:
    """Stamp an event not stored yet, unless it already is (the first stamp wins).

    Domain events are frozen dataclasses; their ``__dict__`` becomes the stored state as is,
    so the stamp is written there.
    """
    state: dict[str, Any] = domain_event.__dict__
    if STAMP not in state:
        state[STAMP] = ctx.traceparent
        if ctx.tracestate:
            state[STAMP_STATE] = ctx.tracestate


def stamp_all(domain_events: Iterable[object], ctx: TraceContext) -> None:
    for domain_event in domain_events:
        stamp(domain_event, ctx)


def stamp_pending(aggregates: Iterable[object]) -> None:
    """Stamp the pending events of aggregates about to be saved: with the current context, or,
    when none is current (a background loop), a child of the trace the aggregate remembers in
    its own ``traceparent`` attribute (a notification delivered later keeps its trace)."""
    ctx = _current.get()
    for aggregate in aggregates:
        pending = getattr(aggregate, "pending_events", None)
        if not pending:
            continue
        use = ctx
        if use is None:
            remembered = parse(getattr(aggregate, TRACEPARENT, None))
            if remembered is None:
                continue
            use = remembered.child()
        stamp_all(pending, use)


def stamped(domain_event: object) -> tuple[str | None, str | None]:
    """(traceparent, tracestate) a stored event was stamped with."""
    state: dict[str, Any] = getattr(domain_event, "__dict__", {})
    return state.get(STAMP), state.get(STAMP_STATE)


def headers_of(traceparent: str | None, tracestate: str | None) -> dict[str, str]:
    if not traceparent:
        return {}
    if tracestate:
        return {TRACEPARENT: traceparent, TRACESTATE: tracestate}
    return {TRACEPARENT: traceparent}
