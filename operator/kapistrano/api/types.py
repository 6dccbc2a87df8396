"""Constrained string types shared by the Release models.

Every pattern here is written for both pydantic (Rust regex) and the Kubernetes API server
(Go RE2): no look-around, no back-references. Values that end up on a remote shell command line are
always quoted as well; the patterns are the first line of defence, not the only one.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

#: One path segment: never "." or "..", never starting with "-", no shell metacharacters.
_SEGMENT = r"\.?[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]*"
_TEMPLATE_SEGMENT = r"\.?[A-Za-z0-9_@+{}-][A-Za-z0-9_.@+{}-]*"

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
HOST_NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?$"
VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"
GIT_REF_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./+-]{0,254}$"
REL_PATH_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*$"
ABS_PATH_PATTERN = rf"^(/{_SEGMENT})+$"
PID_PATH_PATTERN = rf"^/?{_TEMPLATE_SEGMENT}(/{_TEMPLATE_SEGMENT})*$"
ADDRESS_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$"
USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
#: Printable ASCII without space, quotes, backquote or backslash.
_URL_CHARS = r"[!#-&(-\[\]-_a-~]"
URL_PATTERN = rf"^(https?|ssh|git|file)://{_URL_CHARS}+$|^[A-Za-z0-9_][A-Za-z0-9_.-]*@[A-Za-z0-9_.-]+:{_URL_CHARS}+$"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
PERCENT_PATTERN = r"^([1-9][0-9]?|100)%$"
UNIT_PATTERN = r"^[A-Za-z0-9@_.:*\\][A-Za-z0-9@_.:*\\-]*$"
HTTP_PATH_PATTERN = r"^/[!-~]*$"
#: Kubernetes label keys (an optional DNS-subdomain prefix and '/', then a name) and values.
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
#: Shell commands: any text but control characters other than tab, newline and carriage return.
SHELL_COMMAND_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


#: What each pattern means, for error messages people can act on.
PATTERN_HINTS = {
    DNS_LABEL_PATTERN: "must be a DNS label: lowercase letters, digits and '-', at most 63 characters",
    HOST_NAME_PATTERN: "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    VERSION_PATTERN: "must be letters, digits, '.', '_', '+' or '-' (no spaces or shell characters), "
    "not starting with '-'",
    GIT_REF_PATTERN: "must be a git ref: letters, digits, '.', '_', '/', '+' or '-' (no spaces or shell characters), "
    "not starting with '-'",
    REL_PATH_PATTERN: "must be a relative path (no leading '/', no '.' or '..' parts, no spaces or shell characters)",
    ABS_PATH_PATTERN: "must be an absolute path (no '.' or '..' parts, no spaces or shell characters)",
    PID_PATH_PATTERN: "must be a path with optional {index} (no '.' or '..' parts, no spaces or shell characters)",
    ADDRESS_PATTERN: "must be an IP address or a DNS name",
    USER_PATTERN: "must be a user name: lowercase letters, digits, '_' or '-'",
    URL_PATTERN: "must be a URL (https, http, ssh, git, file or user@host:path) without spaces or quotes",
    SHA256_PATTERN: "must be 64 hexadecimal digits",
    UNIT_PATTERN: "must be a systemd unit name or glob, not starting with '-'",
    HTTP_PATH_PATTERN: "must be an HTTP path starting with '/': printable ASCII, no spaces (percent-encode the rest)",
    LABEL_VALUE_PATTERN: "must be a label value: at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit",
    SHELL_COMMAND_PATTERN: "must not contain control characters other than tab and newline",
}


class Signal(StrEnum):
    """POSIX signals a service may be sent, by name (no SIG prefix)."""

    HUP = "HUP"
    INT = "INT"
    QUIT = "QUIT"
    USR1 = "USR1"
    USR2 = "USR2"
    TERM = "TERM"
    KILL = "KILL"
    TSTP = "TSTP"
    CONT = "CONT"
    STOP = "STOP"
    WINCH = "WINCH"
    TTIN = "TTIN"
    TTOU = "TTOU"
    ALRM = "ALRM"


def _no_dotdot(value: str) -> str:
    """Reject '..' anywhere in a git ref: git forbids it and it reads like path traversal."""
    if ".." in value:
        raise ValueError("must not contain '..'")
    return value


def label_key(value: str) -> str:
    """Accept a Kubernetes label key: [prefix/]name, prefix at most 253 characters, name at most 63."""
    if re.fullmatch(LABEL_KEY_PATTERN, value) is None:
        raise ValueError(
            f"label key {value!r} must be [prefix/]name: a DNS subdomain prefix and a name of at most 63 "
            "letters, digits, '-', '_' or '.'"
        )
    return value


def _int_or_percent(value: int | str) -> int | str:
    """Accept an integer >= 1 or a percent string from 1% to 100%."""
    ok = value >= 1 if isinstance(value, int) else re.fullmatch(PERCENT_PATTERN, value) is not None
    if not ok:
        raise ValueError("must be an integer >= 1 or a percent from 1% to 100%")
    return value


def _valid_address(value: str) -> str:
    """Accept an IPv4/IPv6 address or a DNS name; reject numeric names that are not IPv4."""
    bare = value.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        labels = value.split(".")
        if ":" in value or all(label.isdigit() for label in labels):
            raise ValueError(f"{value!r} is not a valid IP address") from None
        if any(not label or len(label) > 63 for label in labels):
            raise ValueError(f"{value!r} is not a valid DNS name") from None
        return value
    return bare


DnsLabel = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
HostName = Annotated[str, Field(pattern=HOST_NAME_PATTERN, max_length=253)]
Version = Annotated[str, Field(pattern=VERSION_PATTERN, max_length=128)]
GitRef = Annotated[
    str,
    Field(
        pattern=GIT_REF_PATTERN,
        max_length=255,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "!self.contains('..')", "message": "must not contain '..'"}]
        },
    ),
    AfterValidator(_no_dotdot),
]
RelPath = Annotated[str, Field(pattern=REL_PATH_PATTERN, max_length=1024)]
#: A linkedDirs/linkedFiles entry: shorter than other paths, so that the CEL overlap rules stay within
#: the API server's cost limit even for 100 dirs and 100 files of the longest length (measured: 128 passes).
LinkedPath = Annotated[str, Field(pattern=REL_PATH_PATTERN, max_length=128)]
AbsPath = Annotated[str, Field(pattern=ABS_PATH_PATTERN, max_length=1024)]
PidPath = Annotated[str, Field(pattern=PID_PATH_PATTERN, max_length=1024)]
Address = Annotated[str, Field(pattern=ADDRESS_PATTERN, max_length=253), AfterValidator(_valid_address)]
UserName = Annotated[str, Field(pattern=USER_PATTERN, max_length=32)]
Url = Annotated[str, Field(pattern=URL_PATTERN, max_length=2048)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN, min_length=64, max_length=64)]
Port = Annotated[int, Field(ge=1, le=65535)]
ShellCommand = Annotated[str, Field(min_length=1, max_length=8192, pattern=SHELL_COMMAND_PATTERN)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]
IntOrPercent = Annotated[int | str, AfterValidator(_int_or_percent)]


def _no_repeats(items: list[str]) -> list[str]:
    """Refuse a list that names something twice, as a CRD list of type set does (pure)."""
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once")
    return items


#: Role names: DNS labels, each at most once (x-kubernetes-list-type set in the CRD).
Roles = Annotated[list[DnsLabel], AfterValidator(_no_repeats)]
