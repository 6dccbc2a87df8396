"""The Release spec (kapistrano.dev/v1alpha1) as pydantic models.

Field names, meanings and defaults follow the published API contract. `json_schema_extra` carries the
Kubernetes-only schema keywords (list maps, CEL rules, int-or-string) that crd.py copies into the CRD.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Protocol, Self

from pydantic import Field, field_validator, model_validator

from kapistrano.api import rules
from kapistrano.api.base import SpecModel
from kapistrano.api.types import (
    DNS_LABEL_PATTERN,
    HTTP_PATH_PATTERN,
    UNIT_PATTERN,
    AbsPath,
    Address,
    DnsLabel,
    GitRef,
    HostName,
    IntOrPercent,
    LabelValue,
    LinkedPath,
    PidPath,
    Port,
    Sha256,
    ShellCommand,
    Signal,
    Url,
    UserName,
    Version,
    label_key,
)


def _cel(rule: str, message: str) -> dict[str, Any]:
    """One x-kubernetes-validations entry (pure)."""
    return {"rule": rule, "message": message}


def _exactly_one(fields: tuple[str, ...]) -> str:
    """CEL expression that is true when exactly one of the optional fields is set (pure)."""
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


def _count_set(model: SpecModel, fields: tuple[str, ...]) -> int:
    """How many of the named optional fields are set on a model (pure)."""
    return sum(getattr(model, f) is not None for f in fields)


class _Named(Protocol):
    """Anything with a name (hosts, services)."""

    @property
    def name(self) -> str: ...


LIST_MAP_BY_NAME: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}


class GitSource(SpecModel):
    """A git repository, mirrored on each host in <deployTo>/repo like Capistrano's git strategy."""

    url: Url = Field(description="Repository URL (https, ssh, git, file, or scp-like user@host:path).")
    ref: GitRef | None = Field(default=None, description="Branch, tag or commit to deploy. Defaults to spec.version.")


class ArchiveSource(SpecModel):
    """A tarball each host downloads and verifies before unpacking."""

    url: Url = Field(description="HTTP(S) URL of a .tar.gz/.tgz/.tar archive, fetched by each host.")
    sha256: Sha256 = Field(description="Expected SHA-256 of the archive, 64 hex digits; checked before unpacking.")
    strip_components: int = Field(
        default=0, ge=0, le=10, description="Leading path components to strip when unpacking (tar --strip-components)."
    )


SOURCE_KINDS = ("git", "archive", "path")


class Source(SpecModel):
    """Where a release's files come from: exactly one of git, archive or path."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                _cel(_exactly_one(SOURCE_KINDS), "exactly one of git, archive or path must be set")
            ]
        }
    }

    git: GitSource | None = Field(default=None, description="Deploy from a git repository.")
    archive: ArchiveSource | None = Field(default=None, description="Deploy from a downloaded archive.")
    path: AbsPath | None = Field(
        default=None, description="Deploy by copying a directory that already exists on each host."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        if _count_set(self, SOURCE_KINDS) != 1:
            raise ValueError("exactly one of git, archive or path must be set")
        return self


class Host(SpecModel):
    """One SSH host the application is deployed to."""

    name: HostName = Field(description="Unique name of the host within the Release.")
    address: Address = Field(description="IP address or DNS name the operator connects to.")
    port: Port = Field(default=22, description="SSH port.")
    user: UserName | None = Field(default=None, description="SSH user; defaults to spec.ssh.user.")
    labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Labels, e.g. zone; keys and values as Kubernetes labels allow.",
        json_schema_extra=rules.LABEL_KEYS,
    )
    roles: list[DnsLabel] = Field(
        default_factory=list,
        max_length=20,
        description="Roles of the host (web, worker, db...): services and hooks with roles run only on hosts "
        "that have one of them.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    primary: bool = Field(
        default=False,
        description="Runs the `once` hooks (migrations) of a rollout, before any other host restarts. "
        "Default: the first host with the roles of the first `once` hook.",
    )

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            label_key(key)
        return labels


class SecretRef(SpecModel):
    """A reference to a Secret in the Release's namespace."""

    name: DnsLabel = Field(description="Name of the Secret.")


class JumpHost(SpecModel):
    """A bastion host every SSH connection is tunnelled through."""

    address: Address = Field(description="IP address or DNS name of the jump host.")
    port: Port = Field(default=22, description="SSH port of the jump host.")
    user: UserName | None = Field(default=None, description="SSH user on the jump host; defaults to spec.ssh.user.")


class SshSpec(SpecModel):
    """How the operator reaches the hosts over SSH."""

    secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with keys `ssh-privatekey` (required) and `known_hosts` "
        "(required unless insecureSkipHostKeyCheck). Required when run by the operator.",
    )
    user: UserName = Field(default="deploy", description="Default SSH user for hosts that name none.")
    connect_timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=600,
        description="Timeout for one SSH connect; also the keepalive interval, so a host cut off in the middle "
        "of a command is noticed within a few of these.",
    )
    command_timeout_seconds: int = Field(
        default=600, ge=1, le=86400, description="Timeout for one remote command (hooks, fetch)."
    )
    jump_host: JumpHost | None = Field(default=None, description="Optional bastion to tunnel through.")
    insecure_skip_host_key_check: bool = Field(
        default=False, description="Accept any host key. Unsafe; logs a warning. Prefer known_hosts."
    )


class Hook(SpecModel):
    """A shell command run in the release directory at one point of the rollout."""

    name: DnsLabel = Field(description="Name of the hook, shown in status and events.")
    run: ShellCommand = Field(description="Shell command, run with `sh -c` in the release directory.")
    once: bool = Field(
        default=False,
        description="Run once per rollout, on the primary host, before any other host restarts (e.g. migrations).",
    )
    roles: list[DnsLabel] = Field(
        default_factory=list,
        max_length=20,
        description="Hosts it runs on: those with one of these roles; none means every host.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class Hooks(SpecModel):
    """Commands run at fixed points of each host's rollout."""

    after_update: list[Hook] = Field(
        default_factory=list, description="After the release is fetched and linked, before any restart."
    )
    before_publish: list[Hook] = Field(
        default_factory=list, description="On each host right before `current` is switched."
    )
    after_publish: list[Hook] = Field(default_factory=list, description="On each host after its services are ready.")


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
                _cel(
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
        if _count_set(self, PROBE_KINDS) != 1:
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
                _cel(f"self.manager != '{m}' || has(self.{m})", f"manager {m} needs the {m} block")
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
    roles: list[DnsLabel] = Field(
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


class OnFailure(StrEnum):
    """What happens to a host whose new release fails."""

    ROLLBACK = "Rollback"
    HALT = "Halt"


#: A host count as an int >= 1 or a percent of hosts, in the CRD.
HOST_COUNT_SCHEMA: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "maxLength": 4,  # "100%": keeps the CEL rule's cost estimate within the API server's budget
    "x-kubernetes-validations": [
        _cel(
            "type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",
            "must be an integer >= 1 or a percent from 1% to 100%",
        )
    ],
}


class RoleStrategy(SpecModel):
    """The budget of the hosts of one role."""

    max_unavailable: IntOrPercent = Field(
        default=1,
        description="Hosts of this role acted on at once: an int >= 1 or a percent of the role's hosts "
        "(rounded down, at least 1). spec.strategy.maxUnavailable still bounds the whole Release.",
        json_schema_extra=HOST_COUNT_SCHEMA,
    )


class Strategy(SpecModel):
    """How the rollout moves across hosts."""

    max_unavailable: IntOrPercent = Field(
        default=1,
        description="Hosts restarting at once: an int >= 1 or a percent of hosts (rounded down, at least 1).",
        json_schema_extra=HOST_COUNT_SCHEMA,
    )
    max_surge: IntOrPercent = Field(
        default=1,
        description="Hosts replacing their instances StartFirst at once: an int >= 1 or a percent of hosts "
        "(rounded down, at least 1). Such hosts keep serving, so they do not use maxUnavailable.",
        json_schema_extra=HOST_COUNT_SCHEMA,
    )
    roles: dict[str, RoleStrategy] = Field(
        default_factory=dict,
        max_length=20,
        description="Per-role budgets, e.g. {web: {maxUnavailable: 1}, worker: {maxUnavailable: '50%'}}.",
        json_schema_extra={
            "maxProperties": 20,
            "x-kubernetes-validations": [
                _cel(f"self.all(k, k.matches('{DNS_LABEL_PATTERN}') && size(k) <= 63)", "role names are DNS labels")
            ],
        },
    )

    @field_validator("roles")
    @classmethod
    def _role_names(cls, roles: dict[str, RoleStrategy]) -> dict[str, RoleStrategy]:
        bad = [name for name in roles if not re.fullmatch(DNS_LABEL_PATTERN, name) or len(name) > 63]
        if bad:
            raise ValueError(f"role names must be DNS labels: {', '.join(bad)}")
        return roles

    min_ready_seconds: int = Field(
        default=0, ge=0, le=86400, description="A host must stay ready this long before the next one starts."
    )
    pause_after_hosts: int | None = Field(
        default=None, ge=0, le=1000, description="Canary: stop after this many hosts until unpaused or raised."
    )
    on_failure: OnFailure = Field(
        strict=False,
        default=OnFailure.ROLLBACK,
        description="Rollback: the failed host returns to its previous release. Halt: it is left as it is.",
    )


class DriftPolicy(StrEnum):
    """What the operator does when a host drifts from the desired state."""

    HEAL = "Heal"
    REPORT = "Report"


class ReleaseSpec(SpecModel):
    """The desired release of an application on a set of SSH hosts."""

    model_config = SpecModel.model_config | {"json_schema_extra": {"x-kubernetes-validations": [rules.LINKED_ACROSS]}}

    application: DnsLabel = Field(description="Application name (DNS label); default deployTo is /var/www/<name>.")
    version: Version = Field(description="The desired release. Changing it starts a rollout.")
    source: Source = Field(description="Where the release comes from: exactly one of git, archive or path.")
    deploy_to: AbsPath | None = Field(default=None, description="Capistrano deploy_to; default /var/www/<application>.")
    keep_releases: int = Field(default=5, ge=1, le=1000, description="Releases kept on each host.")
    linked_dirs: list[LinkedPath] = Field(
        default_factory=list,
        max_length=100,
        description="shared/<dir> symlinked into each release; no entry may repeat or lie inside another.",
        json_schema_extra=rules.LINKED_PATHS,
    )
    linked_files: list[LinkedPath] = Field(
        default_factory=list,
        max_length=100,
        description="shared/<file> symlinked into each release; none may repeat or lie inside a linked dir.",
        json_schema_extra=rules.LINKED_PATHS,
    )
    hosts: list[Host] = Field(
        min_length=1,
        max_length=1000,
        description="The hosts, in rollout order; names unique; at most one primary.",
        json_schema_extra=LIST_MAP_BY_NAME
        | {
            "x-kubernetes-validations": [
                _cel("self.filter(h, has(h.primary) && h.primary).size() <= 1", "at most one host may be primary")
            ]
        },
    )
    ssh: SshSpec = Field(default_factory=SshSpec, description="SSH settings.")
    hooks: Hooks = Field(default_factory=Hooks, description="Commands run at fixed points of the rollout.")
    services: list[Service] = Field(
        default_factory=list,
        max_length=50,
        description="Services restarted on each host after publishing.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    strategy: Strategy = Field(default_factory=Strategy, description="How the rollout moves across hosts.")
    paused: bool = Field(default=False, description="Stop starting new hosts; hosts in progress finish.")
    progress_deadline_seconds: int = Field(
        default=600, ge=1, le=604800, description="No host progressed within this -> ProgressDeadlineExceeded."
    )
    drift_check_interval_seconds: int = Field(
        default=300, ge=0, le=604800, description="How often hosts are verified; 0 disables."
    )
    drift_policy: DriftPolicy = Field(
        strict=False,
        default=DriftPolicy.HEAL,
        description="Heal restarts dead services and re-publishes; Report only reports.",
    )
    revision_history_limit: int = Field(default=10, ge=0, le=1000, description="History entries kept in status.")

    @field_validator("hosts")
    @classmethod
    def _one_primary(cls, hosts: list[Host]) -> list[Host]:
        primaries = [h.name for h in hosts if h.primary]
        if len(primaries) > 1:
            raise ValueError(f"at most one host may be primary, not {', '.join(primaries)}")
        return hosts

    @field_validator("hosts", "services")
    @classmethod
    def _unique_names(cls, items: list[_Named]) -> list[_Named]:
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.name in seen:
                raise ValueError(f"duplicate name {item.name!r} at [{index}]; names must be unique")
            seen.add(item.name)
        return items

    @model_validator(mode="after")
    def _linked_paths_apart(self) -> Self:
        pair = rules.overlapping_paths([*self.linked_dirs, *self.linked_files])
        if pair is not None:
            raise ValueError(f"linked paths {pair[0]!r} and {pair[1]!r} overlap: {rules.LINKED_MESSAGE}")
        return self

    @property
    def deploy_path(self) -> str:
        """deployTo with its default applied (pure)."""
        return self.deploy_to or f"/var/www/{self.application}"

    @property
    def git_ref(self) -> str | None:
        """The git ref to deploy (defaults to version), or None for other sources (pure)."""
        git = self.source.git
        return None if git is None else (git.ref or self.version)

    def user_for(self, host: Host) -> str:
        """The SSH user for a host (pure)."""
        return host.user or self.ssh.user

    def host_named(self, name: str) -> Host | None:
        """The host of that name, if any (pure)."""
        return next((h for h in self.hosts if h.name == name), None)

    def services_for(self, host_name: str) -> list[Service]:
        """The services that run on a host: those without roles, or sharing one with it (pure)."""
        host = self.host_named(host_name)
        roles = set(host.roles) if host else set()
        return [s for s in self.services if not s.roles or roles & set(s.roles)]

    def runs_hook(self, host_name: str, hook: Hook) -> bool:
        """Whether a hook runs on a host: `once` hooks on the primary only, others by roles (pure)."""
        if hook.once:
            return host_name == self.primary_host
        host = self.host_named(host_name)
        return not hook.roles or bool(host and set(host.roles) & set(hook.roles))

    @property
    def once_hooks(self) -> list[Hook]:
        """The hooks that run once per rollout (pure)."""
        hooks = self.hooks
        return [h for h in (*hooks.after_update, *hooks.before_publish, *hooks.after_publish) if h.once]

    @property
    def primary_host(self) -> str:
        """The host that runs `once` hooks: primary: true, else the first with the first once hook's roles (pure)."""
        marked = next((h.name for h in self.hosts if h.primary), None)
        if marked is not None:
            return marked
        wanted = set(self.once_hooks[0].roles) if self.once_hooks else set()
        return next((h.name for h in self.hosts if not wanted or wanted & set(h.roles)), self.hosts[0].name)
