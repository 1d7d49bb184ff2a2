"""``python -m services.notifications``: serve the API (consumers, dispatcher and relay
included), the dev SMTP sink, and the operator's commands."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.notifications.settings import NotificationsSettings
from services.runtime.cli import print_events, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.notifications", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="start the HTTP API, the consumers, the dispatcher, the relay")
    sink = sub.add_parser("smtp-sink", help="dev SMTP server keeping each message in <var>/mail")
    sink.add_argument("--port", type=int, default=None)
    events = sub.add_parser("events", help="print the events on the notifications stream")
    events.add_argument("--follow", action="store_true")
    events.add_argument("--type", default=None)
    args = parser.parse_args(argv)
    settings = NotificationsSettings()
    if args.command == "serve":
        serve("services.notifications.composition:app_factory", settings)
    elif args.command == "smtp-sink":
        from services.notifications.sink import serve_forever

        port = args.port or settings.sink_port
        print(f"SMTP de développement sur 127.0.0.1:{port}, messages dans {settings.sink_dir}")
        asyncio.run(serve_forever(settings.sink_dir, "127.0.0.1", port))
    elif args.command == "events":
        asyncio.run(print_events(settings.nats_url, "notifications", args.type, follow=args.follow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
