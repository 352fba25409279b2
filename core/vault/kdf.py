"""Key derivation: a passphrase becomes a 32-byte master key through a
memory-hard KDF (Argon2id by default, scrypt also accepted).

The salt and parameters are not secret. They are stored in the ``setting``
table (and copied into every backup header) so the same passphrase derives
the same key later, on this or another machine.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from tradeguard.errors import VaultError

KEY_LENGTH = 32

#: Argon2id defaults: 64 MiB, 3 passes, 4 lanes (about 0.15 s on a laptop core).
ARGON2ID_DEFAULTS = {"iterations": 3, "lanes": 4, "memory_cost": 65536}
#: scrypt defaults: N=2^15, r=8, p=1 (32 MiB).
SCRYPT_DEFAULTS = {"n": 2**15, "r": 8, "p": 1}


@dataclass(frozen=True)
class KdfParams:
    """How a passphrase was stretched: algorithm, salt and cost parameters (not secret)."""

    algorithm: str
    salt: bytes
    params: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def new(cls, algorithm: str = "argon2id", **overrides: int) -> "KdfParams":
        """Fresh parameters with a random 16-byte salt."""
        if algorithm == "argon2id":
            params = {**ARGON2ID_DEFAULTS, **overrides}
        elif algorithm == "scrypt":
            params = {**SCRYPT_DEFAULTS, **overrides}
        else:
            raise VaultError(f"unknown KDF {algorithm!r}: use argon2id or scrypt")
        return cls(algorithm, os.urandom(16), params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (salt in base64)."""
        return {"algorithm": self.algorithm, "salt": base64.b64encode(self.salt).decode("ascii"), **dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "KdfParams":
        """Parse what `to_dict` wrote; a malformed record is a VaultError."""
        try:
            algorithm = str(data["algorithm"])
            salt = base64.b64decode(data["salt"], validate=True)
            keys = ARGON2ID_DEFAULTS if algorithm == "argon2id" else SCRYPT_DEFAULTS
            params = {k: int(data[k]) for k in keys}
        except (KeyError, ValueError, TypeError) as exc:
            raise VaultError(f"malformed KDF parameters in the vault record ({type(exc).__name__})") from None
        return cls(algorithm, salt, params)


def derive(passphrase: bytes, kdf: KdfParams) -> bytes:
    """Stretch *passphrase* into a 32-byte key with *kdf*."""
    if kdf.algorithm == "argon2id":
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        p = kdf.params
        return Argon2id(salt=kdf.salt, length=KEY_LENGTH, iterations=p["iterations"], lanes=p["lanes"],
                        memory_cost=p["memory_cost"]).derive(passphrase)
    if kdf.algorithm == "scrypt":
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        p = kdf.params
        return Scrypt(salt=kdf.salt, length=KEY_LENGTH, n=p["n"], r=p["r"], p=p["p"]).derive(passphrase)
    raise VaultError(f"unknown KDF {kdf.algorithm!r} in the vault record")
