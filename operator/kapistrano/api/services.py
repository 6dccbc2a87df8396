"""The services of a Release as pydantic models: managers, probes, and how instances are replaced.

Part of the Release spec (api/spec.py re-exports every name); split out to keep each module small.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from kapistrano.api import rules
from kapistrano.api.base import SpecModel
from kapistrano.api.types import (
    HTTP_PATH_PATTERN,
    UNIT_PATTERN,
    Address,
    DnsLabel,
    PidPath,
    Port,
    Roles,
    ShellCommand,
    Signal,
)


class Manager(StrEnum):
    """How a service is restarted."""

    PIDFILE = "pidfile"
    SYSTEMD = "systemd"
    GRACEFUL = "graceful"
    COMMAND = "command"


class InstancePolicy(StrEnum):
    """How the instances of one host are restarted (named after the StatefulSet field)."""

    PARALLEL = "Parallel"
    ORDERED_READY = "OrderedReady"


class ReplacePolicy(StrEnum):
    """Whether old instances stop before the new ones start, or after they are ready."""

    STOP_FIRST = "StopFirst"
    START_FIRST = "StartFirst"


class DrainedCheck(SpecModel):
    """A command that tells whether a quieted instance has finished its work."""

    exec: ExecAction = Field(
        description="Run on the host in the release directory the instance runs from, with KAPISTRANO_PID, "
        "KAPISTRANO_INSTANCE and KAPISTRANO_PIDFILE set; exit status 0 means drained."
    )
    period_seconds: float = Field(default=0.5, ge=0.05, le=3600, description="Time between two checks.")
    timeout_seconds: int = Field(default=5, ge=1, le=3600, description="Timeout of one check.")


class PidfileManager(SpecModel):
    """Processes started by kapistrano and tracked by pid file (sneakers, sidekiq)."""

    path: PidPath = Field(
        description="Pid file per instance; `{index}` is replaced by the instance number. "
        "Relative to <deployTo>/shared/ unless absolute."
    )
    start: ShellCommand = Field(
        description="Command that starts one instance, run detached in the current release directory; "
        "`{index}` and `{pidfile}` are substituted."
    )
    stop_signal: Signal = Field(strict=False, default=Signal.TERM, description="Signal that asks the process to exit.")
    quiet_signal: Signal | None = Field(
        strict=False,
        default=None,
        description="Signal sent first to stop taking new work (sidekiq: TSTP). stopSignal follows only once "
        "`drained` passes, the process exited by itself, or quietTimeoutSeconds passed: never back to back.",
    )
    drained: DrainedCheck | None = Field(
        default=None,
        description="After quietSignal: a check that passes once the instance finished its work "
        "(e.g. sidekiq's busy count for that process is 0). Without one, the quiet phase lasts until the "
        "process exits or quietTimeoutSeconds ends.",
    )
    quiet_timeout_seconds: int = Field(
        default=30, ge=0, le=86400, description="Longest quiet phase; then stopSignal is sent anyway."
    )
    stop_timeout_seconds: int = Field(
        default=30, ge=0, le=86400, description="How long to wait for the process to exit before killSignal."
    )
    kill_signal: Signal = Field(
        strict=False, default=Signal.KILL, description="Signal sent when stopTimeoutSeconds passed."
    )
    instance_policy: InstancePolicy = Field(
        strict=False,
        default=InstancePolicy.PARALLEL,
        description="Parallel: all instances of a host are stopped together, then started together, then "
        "checked. OrderedReady: one instance after the other, each ready before the next is stopped.",
    )
    replace: ReplacePolicy = Field(
        strict=False,
        default=ReplacePolicy.STOP_FIRST,
        description="StopFirst: old instances exit before new ones start. StartFirst: new instances start "
        "beside the old ones (their own pid files) and the old ones are quieted and stopped once the new "
        "ones are ready; such a host never counts as unavailable (see strategy.maxSurge).",
    )


class GracefulManager(SpecModel):
    """A master process that re-executes itself (unicorn, puma): reload, wait, quit the old one."""

    pid_file: PidPath = Field(description="The master's pid file, relative to <deployTo>/shared/ unless absolute.")
    reload_signal: Signal = Field(
        strict=False, default=Signal.USR2, description="Signal that makes the master re-exec."
    )
    quit_signal: Signal = Field(strict=False, default=Signal.QUIT, description="Signal that makes the old master exit.")
    start: ShellCommand | None = Field(default=None, description="Command that starts the master when none is running.")
    timeout_seconds: int = Field(
        default=60, ge=1, le=3600, description="How long to wait for the new master's pid file."
    )


class SystemdManager(SpecModel):
    """A systemd unit (or a glob of units) restarted with systemctl."""

    unit: str = Field(pattern=UNIT_PATTERN, max_length=256, description="Unit name or glob, e.g. sidekiq@*.service.")
    sudo: bool = Field(default=False, description="Run systemctl through sudo -n.")


class CommandManager(SpecModel):
    """User-given commands for a service kapistrano cannot manage otherwise."""

    start: ShellCommand = Field(description="Starts the service.")
    stop: ShellCommand = Field(description="Stops the service and returns once it has exited.")
    status: ShellCommand | None = Field(default=None, description="Exits 0 while the service runs.")


class ExecAction(SpecModel):
    """A probe command run on the host in the current release directory."""

    command: ShellCommand = Field(description="Shell command; exit status 0 means ready.")


class HttpScheme(StrEnum):
    """How an httpGet probe talks to the port (Kubernetes' URIScheme)."""

    HTTP = "HTTP"
    HTTPS = "HTTPS"


class HttpHeader(SpecModel):
    """A request header of an httpGet probe."""

    name: str = Field(pattern=r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$", max_length=256, description="Header name.")
    value: str = Field(pattern=r"^[^\r\n\x00]*$", max_length=4096, description="Header value.")


class HttpGetAction(SpecModel):
    """An HTTP GET through the SSH connection; 2xx/3xx means ready."""

    path: str = Field(default="/", pattern=HTTP_PATH_PATTERN, max_length=2048, description="Request path.")
    port: Port = Field(description="Port on the host.")
    host: Address | None = Field(default=None, description="Address seen from the host; default 127.0.0.1.")
    scheme: HttpScheme = Field(
        strict=False,
        default=HttpScheme.HTTP,
        description="HTTP or HTTPS; HTTPS does not verify the certificate, as the kubelet does not.",
    )
    http_headers: list[HttpHeader] = Field(
        default_factory=list,
        max_length=64,
        description="Headers to send; one named like a default header (Host, User-Agent, Accept) replaces it.",
    )


class TcpSocketAction(SpecModel):
    """A TCP connect through the SSH connection; an open port means ready."""

    port: Port = Field(description="Port on the host.")
    host: Address | None = Field(default=None, description="Address seen from the host; default 127.0.0.1.")


PROBE_KINDS = ("exec", "http_get", "tcp_socket")


class Probe(SpecModel):
    """Readiness check with Kubernetes probe semantics."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                rules.cel(
                    "(has(self.exec) ? 1 : 0) + (has(self.httpGet) ? 1 : 0) + (has(self.tcpSocket) ? 1 : 0) == 1",
                    "exactly one of exec, httpGet or tcpSocket must be set",
                )
            ]
        }
    }

    exec: ExecAction | None = Field(default=None, description="Run a command on the host.")
    http_get: HttpGetAction | None = Field(default=None, description="HTTP GET through the SSH connection.")
    tcp_socket: TcpSocketAction | None = Field(default=None, description="TCP connect through the SSH connection.")
    initial_delay_seconds: int = Field(default=0, ge=0, le=3600, description="Wait before the first probe.")
    period_seconds: float = Field(
        default=1,
        ge=0.05,
        le=3600,
        description="Time between probes; fractions allowed (e.g. 0.1) so a restart wastes no whole seconds.",
    )
    timeout_seconds: int = Field(default=5, ge=1, le=3600, description="Timeout of one probe.")
    success_threshold: int = Field(default=1, ge=1, le=100, description="Consecutive successes to be ready.")
    failure_threshold: int = Field(default=30, ge=1, le=10000, description="Consecutive failures to give up.")

    @model_validator(mode="after")
    def _exactly_one_action(self) -> Self:
        if rules.count_set(self, PROBE_KINDS) != 1:
            raise ValueError("exactly one of exec, httpGet or tcpSocket must be set")
        return self


class LivenessProbe(Probe):
    """A check that a running service is not stuck; failureThreshold failures in a row restart the host's services."""

    # A failing check is confirmed within one reading of the host: few attempts, as a kubelet's default.
    failure_threshold: int = Field(default=3, ge=1, le=100, description="Consecutive failures that mean stuck.")

    backoff_seconds: float = Field(
        default=10,
        ge=0.1,
        le=3600,
        description="Wait after a liveness restart before the next; doubles per restart in a row (at most 300 s).",
    )
    max_restarts: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Liveness restarts in a row before giving up (Drifted, reason CrashLoop) until the check passes.",
    )


MANAGER_BLOCKS = {m.value: m.value for m in Manager}


class Service(SpecModel):
    """A service restarted on each host after its release is published."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                rules.cel(f"self.manager != '{m}' || has(self.{m})", f"manager {m} needs the {m} block")
                for m in MANAGER_BLOCKS
            ]
        }
    }

    name: DnsLabel = Field(description="Name of the service; its log is shared/log/<name>.log.")
    manager: Manager = Field(strict=False, default=Manager.PIDFILE, description="How the service is restarted.")
    instances: int = Field(default=1, ge=1, le=256, description="pidfile: processes per host.")
    pidfile: PidfileManager | None = Field(default=None, description="Settings for manager pidfile.")
    graceful: GracefulManager | None = Field(default=None, description="Settings for manager graceful.")
    systemd: SystemdManager | None = Field(default=None, description="Settings for manager systemd.")
    command: CommandManager | None = Field(default=None, description="Settings for manager command.")
    readiness: Probe | None = Field(default=None, description="Readiness probe; none means ready once started.")
    liveness: LivenessProbe | None = Field(
        default=None,
        description="Liveness check of running processes (alive but stuck); readiness failures never restart anything.",
    )
    roles: Roles = Field(
        default_factory=list,
        max_length=20,
        description="Hosts it runs on: those with one of these roles; none means every host.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _manager_block_present(self) -> Self:
        if getattr(self, str(self.manager)) is None:
            raise ValueError(f"manager {self.manager} needs the {self.manager} block")
        return self
