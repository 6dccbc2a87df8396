"""SSH keys of the test-host lab: ed25519, generated in-process (no ssh-keygen round trips)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    """A private key file (OpenSSH format, mode 0600) and its public key line."""

    private: Path
    public: str


def write_keypair(path: Path, comment: str) -> KeyPair:
    """Generate an ed25519 key without passphrase into `path` and `path`.pub (side effect: files)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    line = f"{public.decode()} {comment}"
    Path(f"{path}.pub").write_text(line + "\n")
    return KeyPair(private=path, public=line)


def known_hosts_line(address: str, port: int, public: str) -> str:
    """One known_hosts line for a host key (pure): `addr key` on port 22, `[addr]:port key` otherwise."""
    key_type, key_data = public.split()[:2]
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {key_type} {key_data}"
