"""Host errors say by their type whether to retry and whether the host answered at all."""

from __future__ import annotations

import pytest
from kapistrano.hosts.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimeout,
    HookFailed,
    HostError,
    HostKeyMismatch,
    LinkedFileMissing,
    LockConflict,
    NotReady,
    NotWritable,
    ServiceError,
    SourceError,
    TcpConnectFailed,
    Unreachable,
)

#: error class -> (reason on the wire, retry later, the host answered)
CLASSES: dict[type[HostError], tuple[str, bool, bool]] = {
    Unreachable: ("Unreachable", True, False),
    CommandTimeout: ("CommandTimeout", True, False),
    LockConflict: ("Conflict", True, True),
    TcpConnectFailed: ("TcpConnectFailed", True, True),
    AuthFailed: ("AuthFailed", False, True),
    HostKeyMismatch: ("HostKeyMismatch", False, True),
    CommandFailed: ("CommandFailed", False, True),
    HookFailed: ("HookFailed", False, True),
    SourceError: ("SourceFailed", False, True),
    NotWritable: ("NotWritable", False, True),
    LinkedFileMissing: ("LinkedFileMissing", False, True),
    ServiceError: ("ServiceFailed", False, True),
    NotReady: ("NotReady", False, True),
}


@pytest.mark.parametrize("cls", list(CLASSES), ids=[c.__name__ for c in CLASSES])
def test_an_error_class_says_its_reason_whether_to_retry_and_whether_the_host_answered(cls: type[HostError]) -> None:
    assert (cls.reason, cls.transient, cls.reachable) == CLASSES[cls]
