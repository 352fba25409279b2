"""AES-256-GCM for stored secrets and wrapped keys.

A stored value is text: ``v1:<key_id>:<base64(nonce || ciphertext || tag)>``.
The format version and the key id travel with every value, so keys and
formats can change later. The associated data binds the value to where it is
stored (table, row, field), so a ciphertext copied to another row or field
does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradeguard.errors import VaultError

FORMAT = "v1"
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[a-z]+-[0-9a-f]{8,32}$")


class DecryptionFailed(VaultError):
    """A stored value does not decrypt: wrong key, or it was altered or moved."""


@dataclass(frozen=True)
class Envelope:
    """The parts of a stored value."""

    version: str
    key_id: str
    blob: bytes  # nonce || ciphertext || tag


def associated_data(table: str, row: str, field: str) -> bytes:
    """The AAD binding a value to its table, row and field (and the format)."""
    return "\x00".join(("tradeguard", FORMAT, table, row, field)).encode("utf-8")


def encrypt(key: bytes, key_id: str, plaintext: bytes, aad: bytes) -> str:
    """Encrypt *plaintext* under *key* with a fresh 96-bit nonce; returns stored text."""
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + AESGCM(key).encrypt(nonce, plaintext, aad + b"\x00" + key_id.encode("ascii"))
    return f"{FORMAT}:{key_id}:{base64.b64encode(blob).decode('ascii')}"


def parse(stored: str) -> Envelope:
    """Split stored text into its parts; a malformed value is a DecryptionFailed."""
    parts = stored.split(":")
    if len(parts) != 3 or parts[0] != FORMAT or not _KEY_ID.match(parts[1]):
        raise DecryptionFailed("an encrypted value has an unknown format")
    try:
        blob = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionFailed("an encrypted value is not valid base64") from None
    if len(blob) < NONCE_BYTES + 16:
        raise DecryptionFailed("an encrypted value is truncated")
    return Envelope(parts[0], parts[1], blob)


def decrypt(key: bytes, envelope: Envelope, aad: bytes) -> bytes:
    """Decrypt and authenticate; DecryptionFailed if the key, AAD or bytes do not match."""
    nonce, body = envelope.blob[:NONCE_BYTES], envelope.blob[NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, aad + b"\x00" + envelope.key_id.encode("ascii"))
    except InvalidTag:
        raise DecryptionFailed("an encrypted value failed authentication (altered, moved or wrong key)") from None


def mac(key: bytes, label: bytes, message: bytes = b"") -> bytes:
    """HMAC-SHA256 of *label* || *message* (key derivation labels, check values)."""
    return hmac.digest(key, label + b"\x00" + message, "sha256")
