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
from kapistrano.api.services import (
    MANAGER_BLOCKS,
    PROBE_KINDS,
    CommandManager,
    DrainedCheck,
    ExecAction,
    GracefulManager,
    HttpGetAction,
    HttpHeader,
    HttpScheme,
    InstancePolicy,
    LivenessProbe,
    Manager,
    PidfileManager,
    Probe,
    ReplacePolicy,
    Service,
    SystemdManager,
    TcpSocketAction,
)
from kapistrano.api.types import (
    DNS_LABEL_PATTERN,
    AbsPath,
    Address,
    DnsLabel,
    GitRef,
    HostName,
    IntOrPercent,
    LabelValue,
    LinkedPath,
    Port,
    Roles,
    Sha256,
    ShellCommand,
    Url,
    UserName,
    Version,
    label_key,
)

#: The service models live in api/services.py; they are part of the spec's public names.
__all__ = [
    "MANAGER_BLOCKS",
    "PROBE_KINDS",
    "CommandManager",
    "DrainedCheck",
    "ExecAction",
    "GracefulManager",
    "HttpGetAction",
    "HttpHeader",
    "HttpScheme",
    "InstancePolicy",
    "LivenessProbe",
    "Manager",
    "PidfileManager",
    "Probe",
    "ReplacePolicy",
    "Service",
    "SystemdManager",
    "TcpSocketAction",
]


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
                rules.cel(rules.exactly_one(SOURCE_KINDS), "exactly one of git, archive or path must be set")
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
        if rules.count_set(self, SOURCE_KINDS) != 1:
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
    roles: Roles = Field(
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
    roles: Roles = Field(
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


class OnFailure(StrEnum):
    """What happens to a host whose new release fails."""

    ROLLBACK = "Rollback"
    HALT = "Halt"


#: A host count as an int >= 1 or a percent of hosts, in the CRD.
HOST_COUNT_SCHEMA: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "maxLength": 4,  # "100%": keeps the CEL rule's cost estimate within the API server's budget
    "x-kubernetes-validations": [
        rules.cel(
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
                rules.cel(
                    f"self.all(k, k.matches('{DNS_LABEL_PATTERN}') && size(k) <= 63)", "role names are DNS labels"
                )
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
                rules.cel("self.filter(h, has(h.primary) && h.primary).size() <= 1", "at most one host may be primary")
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
    def _once_hooks_on_their_roles(self) -> Self:
        # `once` hooks run on the primary host alone: one without the hook's roles (a web host told to
        # run the db migration) would run it where it does not belong, so that is refused here.
        primary = self.host_named(self.primary_host)
        have = set(primary.roles) if primary else set()
        for hook in self.once_hooks:
            if hook.roles and not have & set(hook.roles):
                raise ValueError(
                    f"once hook {hook.name!r} runs on hosts with role {' or '.join(hook.roles)}, but the primary host "
                    f"{self.primary_host!r} has none of them: mark a host with one of them primary: true"
                )
        return self

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
