"""Secret files under the var dir: created once with mode 0600, never logged, never served."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only the owner can read, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def load_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    value = secrets.token_bytes(nbytes)
    write_private(path, value.hex().encode())
    return value


# Event-store encryption at rest: eventsourcing's AES-GCM cipher (the ``cryptography`` build of
# it, already a dependency; byte-compatible with ``eventsourcing.cipher:AESCipher``).
STORE_CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"
STORE_KEY_BYTES = 32  # AES-256


class StoreKeyError(RuntimeError):
    """A store key that is missing, unreadable or not a base64 AES-256 key (never says the
    key's value)."""


def parse_store_key(text: str, source: Path) -> str:
    """The base64 AES-256 key a store key file holds (one line, e.g. ``openssl rand -base64
    32``); raises StoreKeyError naming the file, never its content."""
    value = text.strip()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != STORE_KEY_BYTES:
        raise StoreKeyError(
            f"{source}: clé de chiffrement du store invalide (attendu : {STORE_KEY_BYTES} octets "
            f"en base64, p. ex. `openssl rand -base64 32`) / invalid store key (expected "
            f"{STORE_KEY_BYTES} bytes, base64)"
        )
    return value


def load_store_key(path: Path, *, create: bool) -> str:
    """The store key in ``path``; when ``create`` and the file does not exist, a new random
    key is written there first (mode 0600). An operator-provided file (``create`` false) that
    is missing is an error: a new key would silently make the existing store unreadable."""
    if not path.exists():
        if not create:
            raise StoreKeyError(
                f"{path}: fichier de clé du store introuvable / store key file not found"
            )
        value = base64.b64encode(secrets.token_bytes(STORE_KEY_BYTES)).decode("ascii")
        _create_exclusive(path, (value + "\n").encode("ascii"))
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise StoreKeyError(
            f"{path}: fichier de clé du store illisible / unreadable store key file "
            f"({type(error).__name__})"
        ) from None
    return parse_store_key(text, path)


def store_cipher_env(path: Path, *, create: bool) -> dict[str, str]:
    """eventsourcing's settings for an encrypted store (``CIPHER_TOPIC``, ``CIPHER_KEY``)."""
    return {"CIPHER_TOPIC": STORE_CIPHER_TOPIC, "CIPHER_KEY": load_store_key(path, create=create)}


def _create_exclusive(path: Path, data: bytes) -> None:
    """Write a new secret file (mode 0600); if another process created it meanwhile (two
    services or workers starting at once), theirs is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # atomic: the first writer wins
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
