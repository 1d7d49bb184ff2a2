"""``python -m services.notifications``: serve the API (consumers, dispatcher and relay
included), the dev SMTP sink, and the operator's commands."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from services.notifications.settings import NotificationsSettings
from services.runtime.cli import ServiceCli
from services.runtime.consumer import ConsumerSpec
from services.runtime.settings import ServiceSettings
from services.runtime.store import ServiceApplication


def _build(settings: ServiceSettings) -> tuple[ServiceApplication, Sequence[ConsumerSpec]]:
    from services.notifications.composition import build_notifications, consumers

    assert isinstance(settings, NotificationsSettings)
    app = build_notifications(settings)
    return app, consumers(app)


CLI = ServiceCli(
    "notifications",
    "services.notifications.composition:app_factory",
    serve_help="start the HTTP API, the consumers, the dispatcher, the relay",
    build=_build,
)


def main(argv: list[str] | None = None) -> int:
    parser, sub = CLI.parser(__doc__)
    sink = sub.add_parser("smtp-sink", help="dev SMTP server keeping each message in <var>/mail")
    sink.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = NotificationsSettings()
    shared = CLI.run(args, settings)
    if shared is not None:
        return shared
    if args.command == "smtp-sink":
        from services.notifications.sink import serve_forever

        port = args.port or settings.sink_port
        print(f"SMTP de développement sur 127.0.0.1:{port}, messages dans {settings.sink_dir}")
        asyncio.run(serve_forever(settings.sink_dir, "127.0.0.1", port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
