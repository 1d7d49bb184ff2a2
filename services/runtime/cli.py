"""Command-line pieces every service uses: serving with uvicorn, printing a stream's events."""

from __future__ import annotations

import sys

import orjson
import uvicorn
from nats.js.api import DeliverPolicy

from contracts.subjects import SUBJECT_PREFIX
from services.runtime.metrics import prepare_multiprocess_dir
from services.runtime.nats import connect
from services.runtime.settings import ServiceSettings


def serve(factory: str, settings: ServiceSettings) -> None:
    # Before any worker starts: a multiprocess metrics directory must not keep an earlier run's.
    prepare_multiprocess_dir()
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


async def print_events(url: str, service: str, event: str | None, *, follow: bool) -> None:
    """Print the stream's CloudEvents, one JSON object per line (an ordered, ephemeral read)."""
    nc = await connect(url, f"{service}-events-cli")
    try:
        js = nc.jetstream()
        subject = (
            f"{SUBJECT_PREFIX}.{service}.{event}.>" if event else f"{SUBJECT_PREFIX}.{service}.>"
        )
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        while True:
            try:
                msg = await sub.next_msg(timeout=None if follow else 1.0)
            except TimeoutError:
                break
            sys.stdout.write(orjson.dumps(orjson.loads(msg.data)).decode() + "\n")
            sys.stdout.flush()
    finally:
        await nc.close()
