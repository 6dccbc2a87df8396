"""Redaction of secrets from any text kapistrano writes out (status, host messages, Events, logs).

Command output reaches the status and Events (the tail of a failed hook's stderr, a service's log), so
it is scrubbed of what looks like a secret: private key blocks, long base64 runs, `NAME=value` pairs
whose name says secret (DB_PASSWORD=..., API_TOKEN: ...), passwords in URLs, bearer tokens and
well-known token formats.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S)
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/=]{60,}")
_HEX = re.compile(r"[0-9a-fA-F]+")
#: NAME=value / NAME: value where NAME says it holds a secret; the value runs to a space or its quote.
_SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)
    (\b[a-z0-9_.-]*(?:passw(?:or)?d|passwd|_pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key
        |credentials?|authorization)[a-z0-9_.-]*)
    (["']?\s*[=:]\s*)
    ("[^"\n]*"|'[^'\n]*'|[^\s"',;]+)
    """
)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)")
_BEARER = re.compile(r"(?i)\b(bearer|token)(\s+)([A-Za-z0-9._~+/-]{8,}=*)")
_KNOWN_TOKENS = re.compile(
    r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)"
)


#: Values that say whether a secret is set or enabled rather than being one.
_PLAIN_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "", "[redacted]"})


def _redact_value(match: re.Match[str]) -> str:
    """A NAME=value match with the value replaced, unless it is a flag like true (pure)."""
    name, sep, value = match.groups()
    if value.strip("\"'").lower() in _PLAIN_VALUES:
        return match.group(0)
    return f"{name}{sep}{REDACTED}"


def _redact_base64(match: re.Match[str]) -> str:
    """A long base64 run replaced; a digest (hexadecimal) or a path (no digit or one case only) is kept (pure)."""
    run = match.group(0)
    mixed = any(c.isdigit() for c in run) and any(c.isupper() for c in run) and any(c.islower() for c in run)
    return REDACTED if mixed and not _HEX.fullmatch(run) else run


def redact(text: str) -> str:
    """`text` with everything that looks like a secret replaced by [redacted] (pure)."""
    text = _PEM.sub("[redacted private key]", text)
    text = _BEARER.sub(rf"\1\2{REDACTED}", text)
    text = _SECRET_ASSIGNMENT.sub(_redact_value, text)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}\3", text)
    text = _KNOWN_TOKENS.sub(REDACTED, text)
    return _LONG_BASE64.sub(_redact_base64, text)
