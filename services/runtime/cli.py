"""The command line every service shares: ``serve``, ``events`` (its stream's events) and, for
a service that consumes streams, ``dead-letters`` (list, show, replay). Each service's
``__main__`` adds its own commands beside these."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts.subjects import STREAMS, SUBJECT_PREFIX
from services.runtime import deadletters
from services.runtime.consumer import ConsumerSpec
from services.runtime.metrics import (
    MULTIPROC_ENV,
    multiprocess_dir,
    multiprocess_registry,
    prepare_multiprocess_dir,
    serve_metrics,
)
from services.runtime.nats import connect
from services.runtime.natsauth import inbox_prefix
from services.runtime.settings import ServiceSettings
from services.runtime.store import ServiceApplication

# What ``dead-letters replay`` needs: the service's application and its consumers.
Build = Callable[[ServiceSettings], tuple[ServiceApplication, Sequence[ConsumerSpec]]]


def serve(factory: str, settings: ServiceSettings) -> None:
    if settings.workers > 1 and multiprocess_dir() is None:
        # Several workers answer for all of them only in multiprocess mode: give them a
        # directory of this service's own (inherited by the workers uvicorn spawns).
        os.environ[MULTIPROC_ENV] = str(settings.var_dir / "metrics" / settings.service_name)
    # Before any worker starts: a multiprocess metrics directory must not keep an earlier run's.
    prepare_multiprocess_dir()
    metrics = None
    if multiprocess_dir() is not None:
        # This process outlives every worker (uvicorn's supervisor, or the one worker): it
        # serves their files on the internal port; the workers do not (services.runtime.metrics).
        metrics = serve_metrics(
            settings.metrics_host, settings.metrics_bind_port, multiprocess_registry()
        )
    try:
        _run_uvicorn(factory, settings)
    finally:
        if metrics is not None:
            metrics.stop()


def _run_uvicorn(factory: str, settings: ServiceSettings) -> None:
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


async def connect_as(settings: ServiceSettings, purpose: str) -> Client:
    """A connection with the service's own credentials (an operator command's)."""
    service = settings.service_name
    return await connect(
        settings.nats_url,
        f"{service}-{purpose}",
        seed_file=settings.nats_seed_file,
        inbox_prefix=inbox_prefix(service),
        tls_ca_file=settings.nats_tls_ca_file,
    )


@dataclass(frozen=True)
class ServiceCli:
    """The commands all services have; ``build`` is given by those that consume streams."""

    service: str
    factory: str  # "services.<name>.composition:app_factory"
    serve_help: str
    build: Build | None = None

    def parser(self, description: str | None) -> tuple[argparse.ArgumentParser, Any]:
        parser = argparse.ArgumentParser(
            prog=f"python -m services.{self.service}", description=description
        )
        sub = parser.add_subparsers(dest="command", required=True)
        sub.add_parser("serve", help=self.serve_help)
        events = sub.add_parser("events", help=f"print the events on the {self.service} stream")
        events.add_argument("--follow", action="store_true", help="keep waiting for new events")
        events.add_argument("--type", default=None, help="only this event, e.g. bloc-validated")
        if self.build is not None:
            dead = sub.add_parser("dead-letters", help="messages the consumers refused")
            verbs = dead.add_subparsers(dest="verb", required=True)
            verbs.add_parser("list", help="every dead letter, with its reason (JSON lines)")
            show = verbs.add_parser("show", help="one dead letter, its headers and its message")
            show.add_argument("sequence", type=int)
            replay = verbs.add_parser(
                "replay", help="apply one again, with today's code (once: then it is marked)"
            )
            replay.add_argument("sequence", type=int)
        return parser, sub

    def run(self, args: argparse.Namespace, settings: ServiceSettings) -> int | None:
        """Carry out a shared command; None when ``args`` names another one."""
        if args.command == "serve":
            serve(self.factory, settings)
            return 0
        if args.command == "events":
            return asyncio.run(_print_events(settings, args.type, follow=args.follow))
        if args.command == "dead-letters":
            assert self.build is not None
            return asyncio.run(_dead_letters(settings, self.build, args))
        return None


async def _print_events(settings: ServiceSettings, event: str | None, *, follow: bool) -> int:
    """Print the stream's CloudEvents, one JSON object per line, read by sequence number
    (the service's credentials may read its own stream, not create consumers on it)."""
    service = settings.service_name
    stream = STREAMS[service]
    prefix = f"{SUBJECT_PREFIX}.{service}.{event}." if event else None
    nc = await connect_as(settings, "events-cli")
    try:
        js = nc.jetstream()
        sequence = (await js.stream_info(stream)).state.first_seq or 1
        while True:
            last = (await js.stream_info(stream)).state.last_seq
            if sequence > last:
                if not follow:
                    return 0
                await asyncio.sleep(0.5)
                continue
            try:
                msg = await js.get_msg(stream, seq=sequence)
            except NotFoundError:
                msg = None
            sequence += 1
            if msg is None or (prefix and not (msg.subject or "").startswith(prefix)):
                continue
            sys.stdout.write(orjson.dumps(orjson.loads(msg.data or b"{}")).decode() + "\n")
            sys.stdout.flush()
    finally:
        await nc.close()


async def _dead_letters(settings: ServiceSettings, build: Build, args: argparse.Namespace) -> int:
    service = settings.service_name
    nc = await connect_as(settings, "dead-letters-cli")
    try:
        js = nc.jetstream()
        if args.verb == "list":
            for listed in await deadletters.list_letters(js, service):
                sys.stdout.write(orjson.dumps(listed.summary()).decode() + "\n")
            return 0
        letter = await deadletters.read(js, service, args.sequence)
        if letter is None:
            print(f"aucune lettre morte n° {args.sequence}", file=sys.stderr)
            return 1
        if args.verb == "show":
            sys.stdout.write(orjson.dumps(letter.summary(), option=orjson.OPT_INDENT_2).decode())
            sys.stdout.write("\n" + letter.payload.decode("utf-8", errors="replace") + "\n")
            return 0
        app, specs = build(settings)
        try:
            spec = next((s for s in specs if s.durable == letter.consumer), None)
            if spec is None:
                print(f"consommateur inconnu : {letter.consumer}", file=sys.stderr)
                return 1
            outcome = await asyncio.to_thread(
                deadletters.replay, app, spec.handlers, letter, spec.before_commit
            )
        finally:
            app.close()
        print(("rejouée : " if outcome.applied else "non rejouée : ") + outcome.detail)
        return 0 if outcome.applied else 1
    finally:
        await nc.close()
