"""IETF Token Status List (draft-ietf-oauth-status-list): the status list an SD-JWT VC's
``status.status_list {idx, uri}`` points to.

A Status List Token is a JWT (``typ: statuslist+jwt``, media type
``application/statuslist+jwt``) with ``sub`` (its own URI, equal to the referenced token's
``uri``), ``iat``, ``exp``, ``ttl`` and ``status_list {bits, lst}``: ``lst`` is the byte array
of every token's status, DEFLATE-compressed in the ZLIB format and base64url-encoded. With
``bits: 1`` each byte holds 8 statuses, **index 0 in the least significant bit** (the opposite
of the W3C Bitstring Status List, whose index 0 is the most significant bit of the first byte);
status 0 is VALID, 1 INVALID (revoked).

Pure: the time and the revoked indexes come in; nothing is read or fetched here.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Iterable
from typing import Any

from services.attestations.domain.credential import inflate_bounded
from services.attestations.domain.sd_jwt import b64url, b64url_decode

TYP = "statuslist+jwt"
MEDIA_TYPE = "application/statuslist+jwt"
BITS = 1
VALID, INVALID = 0, 1
#: Refuse to inflate an ``lst`` beyond this many bytes (a zlib bomb guard), as for the W3C list.
MAX_BYTES = 16 * 1024 * 1024


def encode_lst(revoked: Iterable[int], size: int) -> str:
    """The ``lst`` of ``size`` one-bit statuses, the ``revoked`` ones INVALID."""
    if size <= 0 or size % 8:
        raise ValueError("a one-bit status list has a positive multiple of 8 entries")
    statuses = bytearray(size // 8)
    for index in revoked:
        if not 0 <= index < size:
            raise ValueError(f"status list index {index} is outside 0..{size - 1}")
        statuses[index >> 3] |= 1 << (index & 7)
    return b64url(zlib.compress(bytes(statuses), level=9))


def decode_lst(lst: str) -> bytes:
    """The byte array of an ``lst``; ValueError when it is not base64url ZLIB data."""
    try:
        compressed = b64url_decode(lst)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"lst is not base64url: {error}") from None
    return inflate_bounded(compressed, MAX_BYTES, what="lst", container="ZLIB")


def status_at(statuses: bytes, index: int, bits: int = BITS) -> int:
    """The status of entry ``index`` (IndexError outside the list)."""
    if bits not in (1, 2, 4, 8):
        raise ValueError("bits is 1, 2, 4 or 8")
    per_byte = 8 // bits
    if not 0 <= index < len(statuses) * per_byte:
        raise IndexError(f"status list index {index} is outside the list")
    byte = statuses[index // per_byte]
    return (byte >> ((index % per_byte) * bits)) & ((1 << bits) - 1)


def status_list_claims(
    *, uri: str, issuer: str, lst: str, iat: int, exp: int, ttl: int
) -> dict[str, Any]:
    """The claims of a Status List Token (``iss`` too: the same issuer as the tokens it
    covers, so a verifier can check that it comes from theirs)."""
    if ttl <= 0 or exp <= iat:
        raise ValueError("ttl is positive and exp after iat")
    return {
        "iss": issuer,
        "sub": uri,
        "iat": iat,
        "exp": exp,
        "ttl": ttl,
        "status_list": {"bits": BITS, "lst": lst},
    }
