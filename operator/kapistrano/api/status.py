"""The Release status: a cache of what was observed on the hosts, in kstatus form."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, PlainSerializer

from kapistrano.api.base import StatusModel
from kapistrano.redaction import redact

#: A status message: whatever put it there, it is written out with secrets redacted.
Message = Annotated[str, PlainSerializer(redact, return_type=str)]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes times (pure)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time as written by format_time or by Kubernetes (pure)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class Phase(StrEnum):
    """Phase of the whole Release."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    PAUSED = "Paused"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class HostPhase(StrEnum):
    """Phase of one host."""

    PENDING = "Pending"
    UPDATING = "Updating"
    UPDATED = "Updated"
    PUBLISHING = "Publishing"
    RESTARTING = "Restarting"
    WAITING_READY = "WaitingReady"
    READY = "Ready"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    UNREACHABLE = "Unreachable"
    CONFLICT = "Conflict"


class ConditionStatus(StrEnum):
    """metav1.Condition status values."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Types of the Release's conditions (kstatus names, plus Drifted)."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    DRIFTED = "Drifted"
    HOST_KEYS_VERIFIED = "HostKeysVerified"


class Reason(StrEnum):
    """CamelCase reasons of conditions, host errors and Events; the values are part of the API."""

    # The rollout as a whole (condition reasons).
    AS_EXPECTED = "AsExpected"
    RECONCILING = "Reconciling"
    NEW_ROLLOUT = "NewRollout"
    ROLLING_OUT = "RollingOut"
    ROLLING_BACK = "RollingBack"
    PAUSED = "Paused"
    HOST_UPDATED = "HostUpdated"
    ROLLED_OUT = "RolledOut"
    ROLLOUT_COMPLETE = "RolloutComplete"
    MINIMUM_HOSTS_AVAILABLE = "MinimumHostsAvailable"
    MINIMUM_HOSTS_UNAVAILABLE = "MinimumHostsUnavailable"
    SERVICE_DOWN = "ServiceDown"
    DRIFTED = "Drifted"
    HEALING = "Healing"
    HOST_FAILED = "HostFailed"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    INVALID_SPEC = "InvalidSpec"
    CREDENTIALS_INVALID = "CredentialsInvalid"
    # One host (host errors; those that stall the rollout are condition reasons too).
    HOST_READY = "HostReady"
    HOST_ERROR = "HostError"
    UNREACHABLE = "Unreachable"
    AUTH_FAILED = "AuthFailed"
    HOST_KEY_MISMATCH = "HostKeyMismatch"
    COMMAND_FAILED = "CommandFailed"
    HOOK_FAILED = "HookFailed"
    COMMAND_TIMEOUT = "CommandTimeout"
    CONFLICT = "Conflict"
    SOURCE_FAILED = "SourceFailed"
    TCP_CONNECT_FAILED = "TcpConnectFailed"
    NOT_WRITABLE = "NotWritable"
    LINKED_FILE_MISSING = "LinkedFileMissing"
    SERVICE_FAILED = "ServiceFailed"
    NOT_READY = "NotReady"
    ORPHANS_RUNNING = "OrphansRunning"
    LIVENESS_FAILED = "LivenessFailed"
    CRASH_LOOP = "CrashLoop"
    ORPHANS_STOPPED = "OrphansStopped"
    INTERNAL_ERROR = "InternalError"
    UNSAFE_LINKED_PATH = "UnsafeLinkedPath"
    SECRET_NOT_OPTED_IN = "SecretNotOptedIn"  # noqa: S105 - a reason, not a secret
    INSECURE_HOST_KEYS = "InsecureHostKeys"
    INSECURE_HOST_KEYS_FORBIDDEN = "InsecureHostKeysForbidden"
    INSECURE_SKIP_HOST_KEY_CHECK = "InsecureSkipHostKeyCheck"
    KNOWN_HOSTS = "KnownHosts"
    # Requests of an operator on duty (annotations): condition and Event reasons.
    ABORTED = "Aborted"


class Condition(StatusModel):
    """A metav1.Condition."""

    type: str = Field(description="Condition type, e.g. Ready, Reconciling, Stalled.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(default=None, description="metadata.generation this was computed for.")
    last_transition_time: str = Field(
        description="When status last changed.", json_schema_extra={"format": "date-time"}
    )
    reason: str = Field(description="CamelCase reason.")
    message: Message = Field(default="", description="Human-readable detail.")


class HostStatus(StatusModel):
    """What was last observed on one host."""

    name: str = Field(description="Host name from spec.hosts.")
    phase: HostPhase = Field(default=HostPhase.PENDING, description="Where the host is in the rollout.")
    version: str | None = Field(default=None, description="Version `current` points at on the host.")
    release: str | None = Field(default=None, description="Release directory name `current` points at.")
    ready: bool = Field(default=False, description="Every service passes readiness.")
    ready_since: str | None = Field(
        default=None,
        description="Since when the host is ready on its version.",
        json_schema_extra={"format": "date-time"},
    )
    attempts: int = Field(default=0, description="Rollout attempts of spec.version on this host.")
    restarts: int = Field(default=0, description="Service restarts done by kapistrano on this host.")
    restarted_for: str | None = Field(
        default=None, description="The restart request this host last completed (kubectl kapistrano restart)."
    )
    action: str | None = Field(
        default=None,
        description="Action under way on this host (Publish, Rollback, Restart, Heal), recorded before acting "
        "so that an interrupted action is resumed.",
    )
    failed_version: str | None = Field(default=None, description="The version that failed on this host.")
    rollback_failed: bool = Field(
        default=False,
        description="Rolling this host back from failedVersion failed too (e.g. no earlier release): it is "
        "left as it is until spec.version changes.",
    )
    previous_release: str | None = Field(
        default=None, description="Release `current` pointed at before the last publish (the rollback target)."
    )
    roles: list[str] = Field(default_factory=list, description="The host's roles, from the spec.")
    probe: str | None = Field(
        default=None,
        description="The readiness probes that judged the host: those its release was published with "
        "(`[release <name>]`), or spec.services for a release published without a record (`[spec]`).",
    )
    orphans: list[str] = Field(
        default_factory=list,
        description="Live processes kapistrano started that the host's release no longer names (instances "
        "beyond the count, retired services); stopped at the next publish, or by driftPolicy Heal.",
    )
    liveness_restarts: int = Field(
        default=0, description="Restarts in a row because a liveness check failed; reset once it keeps passing."
    )
    liveness_restarted_at: str | None = Field(
        default=None, description="When the last liveness restart ended.", json_schema_extra={"format": "date-time"}
    )
    stopped: list[str] = Field(
        default_factory=list,
        description="Processes the last publish of this host stopped because the spec no longer names them.",
    )
    message: Message = Field(default="", description="Last progress or error message.")
    last_transition_time: str | None = Field(
        default=None, description="When phase last changed.", json_schema_extra={"format": "date-time"}
    )


class RequestKind(StrEnum):
    """Requests made with annotations on the Release (kubectl kapistrano, Argo CD actions)."""

    PAUSE = "Pause"
    RESUME = "Resume"
    PROMOTE = "Promote"
    ABORT = "Abort"


class HistoryEntry(StatusModel):
    """A version that was fully rolled out, or a request acted on (then `request` is set)."""

    version: str = Field(description="The version (for a request: spec.version when it was acted on).")
    completed_at: str = Field(
        description="When every host was ready on it (for a request: when it was acted on).",
        json_schema_extra={"format": "date-time"},
    )
    request: RequestKind | None = Field(
        default=None, description="Pause, Resume, Promote or Abort: this entry records a request, not a rollout."
    )
    token: str | None = Field(default=None, description="The request's annotation value.")
    requested_by: str | None = Field(
        default=None, description="Who asked: the field manager that last set the request's annotation."
    )
    reason: str | None = Field(default=None, description="Why, from the annotation kapistrano.dev/reason.")
    message: str | None = Field(default=None, description="What the request did.")


class ReleaseStatus(StatusModel):
    """Observed state of a Release."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last acted on.")
    phase: Phase = Field(default=Phase.PENDING, description="Pending, Progressing, Ready, Paused, Degraded or Failed.")
    version: str | None = Field(default=None, description="spec.version being rolled out or done.")
    current_version: str | None = Field(
        default=None, description="Last version fully rolled out on every host (the rollback target)."
    )
    failed_version: str | None = Field(
        default=None, description="A version that failed; not retried until spec.version changes or a retry is asked."
    )
    hosts_total: int = Field(default=0, description="Number of hosts.")
    hosts_updated: int = Field(default=0, description="Hosts on spec.version.")
    hosts_ready: int = Field(default=0, description="Hosts whose services pass readiness.")
    hosts_available: int = Field(default=0, description="Hosts ready for at least minReadySeconds.")
    ready: str = Field(default="0/0", description="Updated-and-ready / total, for the printer column.")
    message: Message = Field(default="", description="What is happening now.")
    last_progress_time: str | None = Field(
        default=None, description="When a host last made progress.", json_schema_extra={"format": "date-time"}
    )
    restarted_at: str | None = Field(
        default=None, description="Value of the restart request last completed (kubectl kapistrano restart)."
    )
    retries: int = Field(default=0, description="Retries of a failed version acted on (kubectl kapistrano retry).")
    retried_for: str | None = Field(
        default=None, description="Value of the retry request last acted on (annotation kapistrano.dev/retry)."
    )
    paused_for: str | None = Field(
        default=None, description="The pause request in effect (annotation kapistrano.dev/pause), if any."
    )
    promoted_for: str | None = Field(
        default=None, description="Value of the promote request last acted on (annotation kapistrano.dev/promote)."
    )
    promoted_version: str | None = Field(
        default=None, description="The version promoted past its pauseAfterHosts stop."
    )
    aborted_for: str | None = Field(
        default=None, description="Value of the abort request last acted on (annotation kapistrano.dev/abort)."
    )
    aborted_version: str | None = Field(
        default=None, description="The version aborted: its hosts went back to abortTarget until spec.version changes."
    )
    abort_target: str | None = Field(default=None, description="The version the aborted hosts went back to.")
    hosts: list[HostStatus] = Field(
        default_factory=list,
        description="Per-host progress.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="kstatus conditions: Ready, Reconciling, Stalled, Progressing, Available.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    history: list[HistoryEntry] = Field(default_factory=list, description="Completed versions, newest first.")
    host_keys_verified: bool | None = Field(
        default=None,
        description="False while spec.ssh.insecureSkipHostKeyCheck is set: host keys are not verified.",
    )

    def host(self, name: str) -> HostStatus | None:
        """The status entry of a host, if any (pure)."""
        return next((h for h in self.hosts if h.name == name), None)

    def condition(self, type_: str) -> Condition | None:
        """The condition of a type, if any (pure)."""
        return next((c for c in self.conditions if c.type == type_), None)
