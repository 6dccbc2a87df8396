"""Removing key material from text that leaves kapistrano: Events, status messages, hook output."""

from __future__ import annotations

import re

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S)
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/=]{60,}")


def redact(text: str) -> str:
    """Remove anything that looks like key material (PEM blocks, long base64 runs) (pure)."""
    return _LONG_BASE64.sub("[redacted]", _PEM.sub("[redacted private key]", text))
