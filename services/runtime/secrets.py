"""Secret files under the var dir: created once with mode 0600, never logged, never served."""

from __future__ import annotations

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
