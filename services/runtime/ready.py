"""Bring the local system up: provision the bus as soon as NATS answers (streams and durable
consumers, with the provisioner's key: the services may not create them), wait until every
local service answers ``/readyz``, then say where everything is.

Run by ``make run`` beside the services; it then stays idle so the process runner keeps going.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.error
import urllib.request

SERVICES = {
    "registry": "http://127.0.0.1:8101",
    "attestations": "http://127.0.0.1:8102",
    "notifications": "http://127.0.0.1:8103",
}


def wait_ready(urls: dict[str, str], timeout: float = 60.0) -> list[str]:
    """Names of the services still not ready after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    waiting = dict(urls)
    while waiting and time.monotonic() < deadline:
        for name, base in list(waiting.items()):
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        del waiting[name]
            except (urllib.error.URLError, OSError):
                pass
        if waiting:
            time.sleep(0.2)
    return sorted(waiting)


def main() -> int:
    var = os.environ.get("CERTIBLOC_VAR_DIR", "var")
    from services.runtime.natsauth import PROVISIONER
    from services.runtime.provision import run
    from services.runtime.settings import ServiceSettings

    asyncio.run(run(ServiceSettings(service_name=PROVISIONER), wait=60))
    missing = wait_ready(SERVICES)
    if missing:
        print(f"pas prêts après 60 s : {', '.join(missing)}", file=sys.stderr)
        return 1
    lines = [
        "certibloc est prêt :",
        *(f"  {name:<14} {url}  (API : {url}/docs)" for name, url in SERVICES.items()),
        f"  {'nats':<14} {os.environ.get('CERTIBLOC_NATS_URL', 'nats://127.0.0.1:4250')}",
        # /metrics is never on the public port: each service's own, at that port + 1000.
        "  métriques Prometheus : "
        + ", ".join(f"{url[:-4]}{int(url[-4:]) + 1000}/metrics" for url in SERVICES.values()),
        f"  clé du centre de démonstration : {var}/demo-center.key",
        f"  e-mails (serveur SMTP de développement 127.0.0.1:2525) : {var}/mail/",
        "  Ctrl-C arrête tout.",
    ]
    print("\n".join(lines), flush=True)
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
