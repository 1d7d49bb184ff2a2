"""The bus's authorization: one NKey per service, and what each may do on NATS.

Each service connects with its own NKey (an Ed25519 key pair: the service holds the seed, the
server only the public key, so the server's configuration holds no secret). The server lets
each one

- publish only its own events (``certibloc.<service>.>``) and, if it consumes, its own dead
  letters (``certibloc.deadletter.<service>.>``);
- use only the JetStream API calls it makes: read its own stream's state and messages (and
  its dead-letter stream's), look up the streams it consumes, pull from its own durable
  consumers on them and acknowledge their messages. No service may create, change, delete or
  purge a stream, create or touch a consumer, or publish on another's subjects;
- receive only on its own inbox prefix (``_INBOX_<service>.>``): replies to its requests.

Streams and consumers are created by the ``provisioner`` key (``services.runtime.provision``),
which may create and update exactly the streams and durable consumers the contracts name, and
delete nothing: a stream's configuration can source another stream or capture any subject, so
whoever may write it may read everything. An ``operator`` key has every right, for an
operator's tools and for tests; no service uses it.

The rules are generated from the contracts (streams, consumers), for ``make run``
(``dev-config``) and for deploy/ (``deploy-config``, checked against ``deploy/nats/auth.conf``
by the tests); seeds are files of mode 0600, never logged.

JetStream's store is encrypted at rest by the server itself (``cipher: chachapoly``): ``make
run``'s key is created once in ``var/nats/jetstream-key.conf`` (mode 0600), which the
configuration includes, so ``server.conf`` itself holds no secret; deploy/ reads it from the
server's environment (``$CERTIBLOC_NATS_STORE_KEY``, from a Secret).

``python -m services.runtime.natsauth dev-config --var-dir var --port 4250 --http-port 8250``
``python -m services.runtime.natsauth credentials DIR`` (seeds, and the public keys as an env file)
``python -m services.runtime.natsauth deploy-config`` (the authorization block deploy/ includes)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nkeys

from contracts.subjects import (
    CONSUMERS,
    STREAMS,
    deadletter_stream,
    deadletter_subjects,
    durable_for,
    stream_subjects,
)

SERVICES: tuple[str, ...] = tuple(STREAMS)
PROVISIONER = "provisioner"
OPERATOR = "operator"
SEED_SUFFIX = ".nk"
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # NATS's own default, written out: the bus's hard limit
JETSTREAM_CIPHER = "chachapoly"
JETSTREAM_KEY_FILE = "jetstream-key.conf"  # beside server.conf: included by name
JS = "$JS.API"


def inbox_prefix(service: str) -> str:
    return f"_INBOX_{service}"


def new_seed() -> bytes:
    seed: bytes = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    return seed


def public_key(seed: bytes) -> str:
    key = nkeys.from_seed(bytearray(seed))
    try:
        return str(key.public_key.decode())
    finally:
        key.wipe()


def seed_file(directory: Path, user: str) -> Path:
    return directory / f"{user}{SEED_SUFFIX}"


def ensure_credentials(
    directory: Path, users: Sequence[str] = (*SERVICES, PROVISIONER, OPERATOR)
) -> dict[str, str]:
    """Create a seed file (mode 0600) for each user that has none; user -> public key."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    keys: dict[str, str] = {}
    for user in users:
        path = seed_file(directory, user)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(new_seed() + b"\n")
        keys[user] = public_key(path.read_bytes().strip())
    return keys


def ensure_jetstream_key(directory: Path) -> tuple[Path, bool]:
    """The file (mode 0600) holding JetStream's encryption key as a configuration line
    (``key: "..."``), created with a random key when missing; (path, whether it was new)."""
    path = directory / JETSTREAM_KEY_FILE
    if path.exists():
        return path, False
    directory.mkdir(parents=True, exist_ok=True)
    line = f"key: {json.dumps(secrets.token_urlsafe(32))}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: theirs is the key
        return path, False
    with os.fdopen(fd, "w") as out:
        out.write(line)
    return path, True


def permissions(service: str, partitions: int = 1) -> dict[str, Any]:
    """What ``service`` may publish and subscribe to (nats-server ``permissions`` block)."""
    own = STREAMS[service]
    publish = [*stream_subjects(service), *_read_api(own)]
    consumes = CONSUMERS[service]
    if consumes:
        publish += [*deadletter_subjects(service), *_read_api(deadletter_stream(service))]
    for producer, base in consumes:
        upstream = STREAMS[producer]
        publish.append(f"{JS}.STREAM.INFO.{upstream}")
        for partition in range(partitions):
            durable = durable_for(base, partition, partitions)
            publish += [
                f"{JS}.CONSUMER.INFO.{upstream}.{durable}",
                f"{JS}.CONSUMER.MSG.NEXT.{upstream}.{durable}",
                f"$JS.ACK.{upstream}.{durable}.>",
            ]
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": [f"{inbox_prefix(service)}.>"]},
    }


def provisioner_permissions(partitions: int = 1) -> dict[str, Any]:
    """Create and align the contracts' streams and durable consumers; nothing else."""
    streams = [*STREAMS.values()]
    streams += [deadletter_stream(service) for service, consumes in CONSUMERS.items() if consumes]
    publish = [f"{JS}.STREAM.{call}.{s}" for s in streams for call in ("INFO", "CREATE", "UPDATE")]
    for consumes in CONSUMERS.values():
        for producer, base in consumes:
            upstream = STREAMS[producer]
            for partition in range(partitions):
                durable = durable_for(base, partition, partitions)
                publish += [
                    f"{JS}.CONSUMER.INFO.{upstream}.{durable}",
                    f"{JS}.CONSUMER.DURABLE.CREATE.{upstream}.{durable}",
                ]
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": [f"{inbox_prefix(PROVISIONER)}.>"]},
    }


def _read_api(stream: str) -> list[str]:
    return [f"{JS}.STREAM.{call}.{stream}" for call in ("INFO", "MSG.GET")]


def authorization(nkeys_by_user: Mapping[str, str], partitions: int = 1) -> dict[str, Any]:
    """The server's ``authorization`` block; values may be ``$VARIABLE`` references."""
    users: list[dict[str, Any]] = [
        {"nkey": nkeys_by_user[service], "permissions": permissions(service, partitions)}
        for service in SERVICES
    ]
    if PROVISIONER in nkeys_by_user:
        users.append(
            {
                "nkey": nkeys_by_user[PROVISIONER],
                "permissions": provisioner_permissions(partitions),
            }
        )
    if OPERATOR in nkeys_by_user:
        users.append(
            {
                "nkey": nkeys_by_user[OPERATOR],
                "permissions": {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}},
            }
        )
    return {"users": users}


def render(value: Any, indent: int = 0) -> str:
    """A value in nats-server's configuration syntax (JSON-like; ``$VAR`` left unquoted)."""
    pad = "  " * indent
    if isinstance(value, dict):
        inner = "\n".join(f"{pad}  {k}: {render(v, indent + 1)}" for k, v in value.items())
        return "{\n" + inner + f"\n{pad}}}"
    if isinstance(value, list):
        inner = "\n".join(f"{pad}  {render(v, indent + 1)}" for v in value)
        return "[\n" + inner + f"\n{pad}]"
    if isinstance(value, str) and value.startswith("$") and not value.startswith("$JS"):
        return value  # a variable, resolved by the server from its environment
    return json.dumps(value)


def server_config(
    *,
    port: int,
    store_dir: Path,
    nkeys_by_user: Mapping[str, str],
    http_port: int | None = None,
    host: str = "127.0.0.1",
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    server_name: str | None = None,
    cluster: Mapping[str, Any] | None = None,
    partitions: int = 1,
    encryption_key_file: str | None = None,
) -> str:
    """A JetStream server with the services' authorization, on ``host`` (one node of a
    ``cluster`` when that block is given); its store encrypted at rest with the key that
    ``encryption_key_file`` holds (a file name relative to the configuration's directory,
    included, so the configuration itself holds no secret)."""
    lines = [
        "# Generated by services.runtime.natsauth: a JetStream server with the services'",
        "# authorization (the same rules as deploy/nats/auth.conf).",
        f"listen: {json.dumps(f'{host}:{port}')}",
    ]
    if server_name is not None:
        lines.append(f"server_name: {json.dumps(server_name)}")
    if http_port is not None:
        lines.append(f"http: {json.dumps(f'{host}:{http_port}')}")
    lines += [
        f"max_payload: {max_payload}",
        "jetstream " + _jetstream_block(store_dir, encryption_key_file),
        "authorization " + render(authorization(nkeys_by_user, partitions)),
    ]
    if cluster is not None:
        lines.append("cluster " + render(dict(cluster)))
    return "\n".join([*lines, ""])


def _jetstream_block(store_dir: Path, encryption_key_file: str | None) -> str:
    block = render({"store_dir": str(store_dir)})
    if encryption_key_file is None:
        return block
    return block.removesuffix("}") + (
        f"  cipher: {JETSTREAM_CIPHER}\n  include {json.dumps(encryption_key_file)}\n}}"
    )


DEPLOY_PARTITIONS = 8  # deploy/'s CERTIBLOC_PARTITIONS: the consumers its auth.conf names


def deploy_config(partitions: int = DEPLOY_PARTITIONS) -> str:
    """The authorization block of deploy/nats/auth.conf: public keys from the environment."""
    refs = {user: f"$CERTIBLOC_NKEY_{user.upper()}" for user in (*SERVICES, PROVISIONER, OPERATOR)}
    return "\n".join(
        [
            "# Generated by `python -m services.runtime.natsauth deploy-config` from the",
            "# contracts (streams, consumers); tests/deploy checks it is up to date. Each",
            "# CERTIBLOC_NKEY_<USER> is a public NKey (not a secret), from the server's",
            "# environment; services hold the matching seeds.",
            "authorization " + render(authorization(refs, partitions)),
            "",
        ]
    )


def write_dev_config(
    var_dir: Path,
    port: int,
    http_port: int | None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    partitions: int = 1,
) -> Path:
    """Credentials under ``var_dir/nats/credentials`` and the store's encryption key in
    ``var_dir/nats/jetstream-key.conf`` (created once) and the server's configuration
    ``var_dir/nats/server.conf`` (rewritten each time); returns its path."""
    nats_dir = var_dir / "nats"
    keys = ensure_credentials(nats_dir / "credentials")
    key_file, new_key = ensure_jetstream_key(nats_dir)
    if new_key and (nats_dir / "jetstream").exists():
        # nats-server reads the old blocks in clear and encrypts only new ones.
        print(
            f"attention : {nats_dir / 'jetstream'} contient des messages écrits en clair avant "
            "le chiffrement au repos ; ils le restent : `make clean` pour repartir d'un store "
            "vide / warning: this JetStream store holds messages written in clear before "
            "encryption at rest; they stay so: `make clean` to start from an empty store",
            file=sys.stderr,
        )
    config = nats_dir / "server.conf"
    config.write_text(
        server_config(
            port=port,
            http_port=http_port,
            store_dir=nats_dir.resolve(),  # JetStream keeps its files in <store_dir>/jetstream
            nkeys_by_user=keys,
            max_payload=max_payload,
            partitions=partitions,
            encryption_key_file=key_file.name,
        )
    )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.natsauth")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev-config", help="credentials and a server config for make run")
    dev.add_argument(
        "--var-dir", type=Path, default=Path(os.environ.get("CERTIBLOC_VAR_DIR", "var"))
    )
    dev.add_argument("--port", type=int, default=4250)
    dev.add_argument("--http-port", type=int, default=8250)
    dev.add_argument("--max-payload", type=int, default=DEFAULT_MAX_PAYLOAD)
    dev.add_argument(
        "--partitions", type=int, default=int(os.environ.get("CERTIBLOC_PARTITIONS", "1"))
    )
    creds = sub.add_parser("credentials", help="seed files and their public keys (nkeys.env)")
    creds.add_argument("directory", type=Path)
    deploy = sub.add_parser("deploy-config", help="print deploy/nats/auth.conf")
    deploy.add_argument("--partitions", type=int, default=DEPLOY_PARTITIONS)
    args = parser.parse_args(argv)
    if args.command == "dev-config":
        print(
            write_dev_config(
                args.var_dir, args.port, args.http_port, args.max_payload, args.partitions
            )
        )
    elif args.command == "credentials":
        keys = ensure_credentials(args.directory)
        env = "".join(f"CERTIBLOC_NKEY_{user.upper()}={key}\n" for user, key in keys.items())
        (args.directory / "nkeys.env").write_text(env)
        print(f"seeds and {args.directory / 'nkeys.env'} written (public keys only in the latter)")
    else:
        sys.stdout.write(deploy_config(args.partitions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
