"""`kubectl kapistrano logs RELEASE SERVICE`: the Release's hosts and SSH Secret read from the cluster, then tailed."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from kapistrano.api.release import Release, ReleaseFileError, parse_release
from kapistrano.cli.common import CliError, Credentials
from kapistrano.cli.logs_cmd import tail_plan, tail_release, until_signalled
from kapistrano.cli.plugin_api import PluginError, Releases
from kapistrano.k8s import credentials
from kapistrano.k8s.credentials import CredentialsProblem, parse


def release_of(obj: dict[str, Any]) -> Release:
    """The Release object without its status; raises PluginError (pure)."""
    try:
        return parse_release({k: v for k, v in obj.items() if k != "status"})
    except ReleaseFileError as exc:
        raise PluginError("the Release does not validate: " + "; ".join(exc.problems)) from None


def credentials_of(releases: Releases, release: Release) -> credentials.Credentials:
    """The client key and known_hosts from the Release's Secret (calls the API); raises PluginError."""
    from kubernetes import client  # noqa: PLC0415  (slow import, only when needed)
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    ref = release.spec.ssh.secret_ref
    if ref is None:
        raise PluginError("spec.ssh.secretRef is not set: no SSH credentials to use")
    where = f"{releases.namespace}/{ref.name}"
    try:
        secret = client.CoreV1Api(releases.api.api_client).read_namespaced_secret(ref.name, releases.namespace)
    except ApiException as exc:
        raise PluginError(f"cannot read Secret {where}: {exc.status} {exc.reason}") from None
    try:
        data = {key: str(value) for key, value in (secret.data or {}).items()}
        return parse(where, data, release.spec.ssh.insecure_skip_host_key_check)
    except CredentialsProblem as problem:
        raise PluginError(problem.message) from None


def cmd_logs(args: argparse.Namespace, releases: Releases) -> int:
    """Tail a service's log on the Release's hosts, each line prefixed by host (calls the API, SSH)."""
    release = release_of(releases.get(args.name))
    try:
        hosts, request = tail_plan(release, args)
    except CliError as exc:
        raise PluginError(str(exc)) from None
    creds = credentials_of(releases, release)
    work = tail_release(release, hosts, request, Credentials(creds.private_key, creds.known_hosts, local=None))
    return 0 if asyncio.run(until_signalled(work)) else 1
