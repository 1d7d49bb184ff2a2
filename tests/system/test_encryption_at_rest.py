"""Encryption at rest: the raw bytes of every store show no personal data nor secret.

The three services run as processes on a real nats-server (JetStream encrypted with its own
key, as ``make run`` configures it), on SQLite files or PostgreSQL schemas, each service's
event store encrypted with eventsourcing's AES-GCM cipher under the key it created on first
start. After a candidate with distinctive values went through (registration, PV, attestations,
e-mail with download links, a signed webhook), every byte of the SQLite files (with their
-wal/-shm), of every row of the services' PostgreSQL tables (read as bytes, not as hex text)
and of the JetStream store directory is searched for those values in UTF-8, Latin-1, UTF-16
and JSON-escaped forms: none is found. Positive controls: the same scans find such a value in
a store written without a key, and in a JetStream store without encryption. A store written in
clear, or under another key, is refused at start with the remedy.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.attestations.pdf import CacheCipher
from services.registry.application import RegistryApp
from services.registry.settings import RegistrySettings
from services.runtime import natsauth
from services.runtime.secrets import StoreKeyError
from tests.notifications.test_webhooks import Receiver
from tests.registry.harness import candidate, full_lines, pv
from tests.support.mailbox import mails, text_of
from tests.support.processes import NatsServer, Postgres, ServedApp, eventually
from tests.support.system import SERVICES, System

GIVEN = "Zéphyrine"
BIRTH_NAME = "Quatrebarbe"
EMAIL = "zephyrine.quatrebarbe@example.org"
BIRTH_DATE = "1999-12-31"
PERSONAL = {
    "given name": GIVEN,
    "birth name": BIRTH_NAME,
    "e-mail": EMAIL,
    "e-mail local part": "zephyrine.quatrebarbe",
    "birth date": BIRTH_DATE,
    "birth date (fr)": "31/12/1999",
}


def forms(value: str) -> dict[str, bytes]:
    """The byte forms a value could be stored in."""
    found = {
        "utf-8": value.encode(),
        "utf-16-le": value.encode("utf-16-le"),
        "utf-16-be": value.encode("utf-16-be"),
        "json-escaped": json.dumps(value)[1:-1].encode(),
    }
    with contextlib.suppress(UnicodeEncodeError):
        found["latin-1"] = value.encode("latin-1")
    return found


def hits(needles: dict[str, str], blobs: dict[str, bytes]) -> list[str]:
    """Where any form of any needle occurs, case-insensitively ("what/form in where")."""
    found = []
    lowered = {where: blob.lower() for where, blob in blobs.items()}
    for label, value in needles.items():
        for form, needle in forms(value).items():
            for where, blob in lowered.items():
                if needle.lower() in blob:
                    found.append(f"{label}/{form} in {where}")
    return found


def file_blobs(root: Path, pattern: str = "**/*") -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


def sqlite_blobs(system: System) -> dict[str, bytes]:
    blobs: dict[str, bytes] = {}
    for name in SERVICES:
        # registry.sqlite, registry.sqlite-wal, registry.sqlite-shm...
        blobs.update(file_blobs(system.work / name, "*.sqlite*"))
    return blobs


def postgres_blobs(pg: Postgres, schemas: list[str]) -> dict[str, bytes]:
    """Every row of every table of ``schemas``, each value as the bytes PostgreSQL holds
    (bytea as bytes: its text form would be hex and hide what it contains)."""
    blobs: dict[str, bytes] = {}
    with pg.connect() as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE'",
            (schemas,),
        ).fetchall()
        assert tables, f"no table in {schemas}"
        for schema, table in tables:
            chunks: list[bytes] = []
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):  # noqa: S608
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
            blobs[f"{schema}.{table}"] = b"\x00".join(chunks)
    return blobs


@pytest.fixture(params=["sqlite", "postgres"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    work = tmp_path / f"enc{uuid.uuid4().hex[:8]}"  # names the PostgreSQL schemas too
    settings = {"NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
    with System(work, postgres=postgres, settings=settings) as running:
        yield running


def schemas_of(system: System) -> list[str]:
    return [f"{system.work.name}_{name}".lower() for name in SERVICES]


async def put_a_candidate_through(system: System) -> dict[str, str]:
    """Registration, PV, attestations, e-mail, webhook; the secrets it handed out."""
    registry, att, notes = (system.url(s) for s in ("registry", "attestations", "notifications"))
    auth = system.auth
    receiver = Receiver(secret="")
    with ServedApp(receiver.app()) as hooks:
        async with httpx.AsyncClient(timeout=30) as http:

            async def webhook_registered() -> httpx.Response | None:
                r = await http.post(
                    f"{notes}/v1/webhooks", headers=auth, json={"url": f"{hooks.url}/hooks"}
                )
                return r if r.status_code == 201 else None

            secret = str((await eventually(webhook_registered)).json()["secret"])
            receiver.secret = secret
            body = candidate(
                "Z1",
                birth_name=BIRTH_NAME,
                given_names=[GIVEN],
                birth_date=BIRTH_DATE,
                email=EMAIL,
            )
            r = await http.post(f"{registry}/v1/candidates", json=body, headers=auth)
            assert r.status_code == 201, r.text
            r = await http.post(
                f"{registry}/v1/deliberations",
                json=pv(full_lines("Z1", "12")),
                headers={**auth, "Idempotency-Key": "enc-pv-1"},
            )
            assert r.status_code == 201, r.text

            async def issued() -> list[dict[str, Any]] | None:
                r = await http.get(
                    f"{att}/v1/attestations", params={"candidate_number": "Z1"}, headers=auth
                )
                items: list[dict[str, Any]] = r.json()["attestations"] if r.is_success else []
                return items if len(items) >= 13 else None

            attestations = await eventually(issued)
            # The stores are encrypted, not lost: the services read them back.
            page = await http.get(attestations[0]["verify_url"])
            assert page.status_code == 200 and f"{GIVEN} {BIRTH_NAME}" in page.text

            await eventually(lambda: len(mails(system.mail_dir)) >= 1, what="the e-mail")
            links = re.findall(r"(http://\S+/pdf\?token=(\S+))", text_of(mails(system.mail_dir)[0]))
            assert links, "no download link in the e-mail"
            token = links[0][1]
            # The PDF, cached by the service on first download, names the holder.
            pdf = await http.get(links[0][0])
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
            await eventually(lambda: len(receiver.verified) >= 1, what="the webhook")
    # whsec_<base64 of the key>: the whole string and the key alone.
    return {"webhook secret": secret, "webhook key": secret.removeprefix("whsec_"), "token": token}


async def test_no_personal_data_nor_secret_in_the_raw_stores(system: System) -> None:
    secrets_ = await put_a_candidate_through(system)
    needles = {**PERSONAL, **secrets_}

    def raw() -> dict[str, bytes]:
        blobs = file_blobs(system.nats.store)  # the JetStream store (and its configuration)
        if system.postgres is None:
            blobs.update(sqlite_blobs(system))
            assert any(w.endswith(".sqlite") for w in blobs), "no SQLite store found"
        else:
            blobs.update(postgres_blobs(system.postgres, schemas_of(system)))
        assert any("/jetstream/" in w and w.endswith(".blk") for w in blobs), "no JetStream block"
        cached = file_blobs(system.work / "attestations" / "pdf")
        assert cached, "no cached PDF"
        # Encrypted whole (the PDF's text is compressed, its attachment base64: a scan for
        # names could miss them in a PDF kept in clear).
        assert all(b.startswith(CacheCipher.MAGIC) and b"%PDF" not in b for b in cached.values())
        blobs.update(cached)
        return blobs

    # While running (the SQLite WAL holds recent writes), then once every process has
    # stopped and flushed.
    assert hits(needles, raw()) == []
    system.stop()
    assert hits(needles, raw()) == []
    # The keys are files of mode 0600, none in a store.
    for name in SERVICES:
        key = system.work / name / "keys" / f"{name}-store.key"
        assert key.stat().st_mode & 0o777 == 0o600, key
    assert (system.nats.store / natsauth.JETSTREAM_KEY_FILE).stat().st_mode & 0o777 == 0o600


# --- positive controls: the same scans find what a store holds in clear ------------------------


def store_blobs(store_env: dict[str, str]) -> dict[str, bytes]:
    """The raw bytes of the store ``store_env`` names: its SQLite files, or its schema's rows."""
    if store_env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        return file_blobs(Path(store_env["SQLITE_DBNAME"]).parent)
    pg = Postgres(
        store_env["POSTGRES_HOST"],
        int(store_env["POSTGRES_PORT"]),
        store_env["POSTGRES_USER"],
        store_env["POSTGRES_DBNAME"],
    )
    return postgres_blobs(pg, [store_env["POSTGRES_SCHEMA"]])


def test_the_scan_finds_a_value_a_store_holds_in_clear(store_env: dict[str, str]) -> None:
    plain = RegistryApp(env=store_env)  # no key: eventsourcing stores the JSON as it is
    plain.add_center("0750099Z", f"Lycée {GIVEN} {BIRTH_NAME}")
    blobs = store_blobs(store_env)
    plain.close()
    assert hits({"birth name": BIRTH_NAME}, blobs), "the scan misses a value stored in clear"


def test_the_same_value_is_not_found_in_an_encrypted_store(
    store_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in store_env.items():
        monkeypatch.setenv(key, value)
    settings = RegistrySettings(var_dir=tmp_path / "var")
    app = RegistryApp(env=settings.eventsourcing_env(RegistryApp.name))
    app.add_center("0750099Z", f"Lycée {GIVEN} {BIRTH_NAME}")
    assert app.center("0750099Z").name.endswith(BIRTH_NAME)  # read back through the cipher
    blobs = store_blobs(store_env)
    app.close()
    assert blobs and hits({"birth name": BIRTH_NAME}, blobs) == []


@pytest.mark.parametrize("encrypted", [False, True])
async def test_the_scan_finds_a_value_in_a_jetstream_store_only_without_encryption(
    tmp_path: Path, encrypted: bool
) -> None:
    server = NatsServer(store=tmp_path / "nats", provisioned=False, encrypted=encrypted)
    server.start()
    try:
        client = await server.connect()
        js = client.jetstream()
        await js.add_stream(name="SCAN_CHECK", subjects=["scan.check"])
        await js.publish("scan.check", json.dumps({"birth_name": BIRTH_NAME}).encode())
        await client.close()
    finally:
        server.stop()  # flushed
    found = hits({"birth name": BIRTH_NAME}, file_blobs(server.store / "jetstream"))
    assert bool(found) is not encrypted, found


# --- a store the key does not open is refused at start, with the remedy -----------------------


def encrypted_registry(var_dir: Path) -> RegistryApp:
    return RegistryApp(env=RegistrySettings(var_dir=var_dir).eventsourcing_env(RegistryApp.name))


def test_a_store_written_in_clear_is_refused_with_the_remedy(
    store_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = RegistryApp(env=store_env)  # an earlier version's store
    plain.add_center("0750099Z", "Lycée témoin")
    plain.close()
    for key, value in store_env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(StoreKeyError, match="make clean"):
        encrypted_registry(tmp_path / "var")


def test_another_key_or_no_key_is_refused(
    store_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in store_env.items():
        monkeypatch.setenv(key, value)
    app = encrypted_registry(tmp_path / "var")
    app.add_center("0750099Z", "Lycée témoin")
    app.close()
    # Read back with the key it created...
    encrypted_registry(tmp_path / "var").close()
    # ...but not with another one, nor without one.
    other = tmp_path / "other.key"
    other.write_text(base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("REGISTRY_STORE_KEY_FILE", str(other))
    with pytest.raises(StoreKeyError, match="mauvaise clé") as refused:
        encrypted_registry(tmp_path / "var")
    assert other.read_text() not in str(refused.value)
    with pytest.raises(StoreKeyError, match="aucune clé"):
        RegistryApp(env=store_env)


def test_an_operator_key_file_is_used_and_must_exist(
    sqlite_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sqlite_env.items():
        monkeypatch.setenv(key, value)
    provided = tmp_path / "secret" / "store.key"
    monkeypatch.setenv("CERTIBLOC_STORE_KEY_FILE", str(provided))
    with pytest.raises(StoreKeyError, match="introuvable"):
        encrypted_registry(tmp_path / "var")
    provided.parent.mkdir()
    provided.write_text("not a key\n")
    with pytest.raises(StoreKeyError, match="invalide"):
        encrypted_registry(tmp_path / "var")
    provided.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    app = encrypted_registry(tmp_path / "var")
    app.add_center("0750099Z", "Lycée témoin")
    app.close()
    assert not (tmp_path / "var" / "keys").exists()  # nothing generated beside it
    # The per-service setting wins over the shared one.
    monkeypatch.setenv("REGISTRY_STORE_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(StoreKeyError, match=r"absent\.key"):
        encrypted_registry(tmp_path / "var")


def test_eventsourcing_variables_in_the_environment_cannot_turn_the_cipher_off(
    sqlite_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**sqlite_env, "REGISTRY_CIPHER_KEY": "", "CIPHER_TOPIC": ""}.items():
        monkeypatch.setenv(key, value)
    app = encrypted_registry(tmp_path / "var")
    assert app.mapper.cipher is not None
    app.add_center("0750099Z", f"Lycée {BIRTH_NAME}")
    app.close()
    blobs = file_blobs(Path(sqlite_env["SQLITE_DBNAME"]).parent)
    assert hits({"birth name": BIRTH_NAME}, blobs) == []


def test_a_service_started_on_a_store_in_clear_exits_naming_the_remedy(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    plain = RegistryApp(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(var / "registry.sqlite"),
        }
    )
    plain.add_center("0750099Z", "Lycée témoin")
    plain.close()
    started = subprocess.run(
        [sys.executable, "-m", "services.registry", "serve"],
        env={**os.environ, "CERTIBLOC_VAR_DIR": str(var), "REGISTRY_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "make clean" in started.stdout + started.stderr
    key = (var / "keys" / "registry-store.key").read_text().strip()
    assert key not in started.stdout + started.stderr
