"""Every way talking to a host can fail, classified in one place.

The engine only ever sees these: connection-level problems are retried with backoff (the host is
Unreachable), command failures fail the host with the tail of stderr, key problems stall the Release.
"""

from __future__ import annotations

import logging

from kapistrano.api.status import Reason
from kapistrano.redaction import redact

log = logging.getLogger(__name__)

STDERR_TAIL_CHARS = 800


def tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    """The last `limit` characters of a command's output, stripped (pure)."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class HostError(Exception):
    """Base of all host errors; `reason` is the CamelCase reason used in status and events."""

    reason: Reason = Reason.HOST_ERROR
    #: Retrying later may help (network, timeouts); otherwise the failure is about the input.
    transient = False
    #: The host answered in time; False when it could not be reached or a command hung, so that
    #: nothing is known of its state.
    reachable = True
    #: Which of several steps run as one command failed (hosts/steps.py), None otherwise.
    step: str | None = None

    def __init__(self, host: str, message: str) -> None:
        message = redact(message)  # it may quote command output: a secret never reaches status or Events
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class Unreachable(HostError):
    """The host could not be connected to in time, or the connection dropped."""

    reason = Reason.UNREACHABLE
    transient = True
    reachable = False


class AuthFailed(HostError):
    """The host refused the client key."""

    reason = Reason.AUTH_FAILED


class HostKeyMismatch(HostError):
    """The host presented a key that known_hosts does not vouch for; no command ran."""

    reason = Reason.HOST_KEY_MISMATCH


class CommandFailed(HostError):
    """A remote command exited non-zero."""

    reason = Reason.COMMAND_FAILED

    def __init__(self, host: str, command: str, exit_status: int | None, stderr: str) -> None:
        self.command = command
        self.exit_status = exit_status
        self.stderr_tail = tail(stderr)
        detail = f": {self.stderr_tail}" if self.stderr_tail else ""
        super().__init__(host, f"command exited with status {exit_status}{detail}")


class HookFailed(HostError):
    """A hook exited non-zero; the message ends with the last lines of its output (redacted)."""

    reason = Reason.HOOK_FAILED

    def __init__(self, host: str, hook: str, exit_status: int, last_lines: str, log_path: str) -> None:
        self.hook = hook
        self.exit_status = exit_status
        self.log_path = log_path
        detail = f"; last lines:\n{last_lines}" if last_lines else ""
        super().__init__(host, f"hook {hook} exited with status {exit_status} (whole output: {log_path}){detail}")


class CommandTimeout(HostError):
    """A remote command did not finish within its timeout."""

    reason = Reason.COMMAND_TIMEOUT
    transient = True
    reachable = False


class LockConflict(HostError):
    """Another Release holds the host lock on this deployTo."""

    reason = Reason.CONFLICT
    transient = True


class SourceError(HostError):
    """The release source could not be fetched or verified (bad ref, sha256 mismatch)."""

    reason = Reason.SOURCE_FAILED


class TcpConnectFailed(HostError, ConnectionRefusedError):
    """A TCP stream opened through the host (direct-tcpip) was refused; also a ConnectionRefusedError."""

    reason = Reason.TCP_CONNECT_FAILED
    transient = True


class NotWritable(HostError):
    """A directory under deployTo cannot be created or written to."""

    reason = Reason.NOT_WRITABLE

    def __init__(self, host: str, path: str, detail: str = "") -> None:
        self.path = path
        suffix = f": {detail}" if detail else ""
        super().__init__(host, f"{path} is not writable{suffix}")


class LinkedFileMissing(HostError):
    """A linkedFiles entry does not exist in shared/ (Capistrano refuses to deploy then too)."""

    reason = Reason.LINKED_FILE_MISSING


class UnsafeLinkedPath(HostError):
    """A linked path would be placed through a symlink or outside the release; nothing was removed."""

    reason = Reason.UNSAFE_LINKED_PATH


class ServiceError(HostError):
    """A service could not be stopped, started or reloaded (the tail of its log is in the message)."""

    reason = Reason.SERVICE_FAILED

    def __init__(self, host: str, service: str, message: str) -> None:
        self.service = service
        super().__init__(host, f"service {service}: {message}")


class NotReady(HostError):
    """A readiness probe reached its failureThreshold; `outcome` says how the attempts went."""

    reason = Reason.NOT_READY
    outcome: object = None


class InternalError(HostError):
    """An unexpected exception while acting on or reading one host: that host fails, the rollout goes on."""

    reason = Reason.INTERNAL_ERROR


def as_host_error(host: str, exc: Exception) -> HostError:
    """A HostError as it is, anything else wrapped in InternalError and logged with its traceback (logs)."""
    if isinstance(exc, HostError):
        return exc
    log.error("unexpected error on %s", host, exc_info=exc)
    return InternalError(host, f"unexpected {type(exc).__name__}: {exc}")
