"""Removing host locks by hand, for `kapistrano unlock` and `kubectl kapistrano unlock`.

A lock outlives the process that took it until it expires (so that a second process never deploys
beside a live one). When a person knows its holder is gone for good, this removes it: it shows who
holds each lock and asks for a confirmation first (or takes --yes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.hosts import lock
from kapistrano.hosts.errors import HostError
from kapistrano.hosts.ssh import SshConnection, target_for_host
from kapistrano.hosts.ssh_options import LocalSsh

#: What was found on each host: its lock, None when unlocked, or why it could not be read.
Reading = lock.LockInfo | HostError | None


def _time(epoch: int | None) -> str:
    """An epoch as an ISO-8601 UTC time, "unknown" for None (pure)."""
    return "unknown" if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def describe(name: str, info: lock.LockInfo | HostError | None) -> str:
    """One line about a host's lock: holder, process, until and since when, message (pure)."""
    if isinstance(info, HostError):
        return f"{name}: cannot read the lock: {info.message}"
    if info is None:
        return f"{name}: not locked"
    until = "released" if lock.is_manual(info.owner) else _time(info.expires)
    process = f" from {info.instance}" if info.instance else ""
    since = f", since {_time(info.since)}" if info.since is not None else ""
    message = f": {info.message}" if info.message else ""
    return f"{name}: locked by {info.owner}{process} until {until}{since}{message}"


async def each_host(
    spec: ReleaseSpec,
    key: bytes | Path | None,
    known: bytes | None,
    hosts: list[Host],
    action: Callable[[SshConnection, str], Awaitable[object]],
    *,
    local: LocalSsh | None = None,
) -> dict[str, Reading]:
    """Run `action(conn, deploy_to)` on every host, at most 20 at once (network I/O)."""
    gate = asyncio.Semaphore(20)

    async def one(host: Host) -> lock.LockInfo | HostError | None:
        async with gate:
            conn = SshConnection(target_for_host(spec, host, key, known, local))
            try:
                result = await action(conn, spec.deploy_path)
                return result if isinstance(result, lock.LockInfo) else None
            except HostError as exc:
                return exc
            finally:
                await conn.close()

    return dict(zip((h.name for h in hosts), await asyncio.gather(*(one(h) for h in hosts)), strict=True))


def confirmed(question: str, yes: bool, answer: Callable[[str], str] = input) -> bool:
    """True with --yes, else when the person answers y/yes; a closed stdin is a no (reads stdin)."""
    if yes:
        return True
    try:
        return answer(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def selected(spec: ReleaseSpec, names: list[str] | None) -> list[Host]:
    """The hosts named with --host, or all of them; raises ValueError for an unknown name (pure)."""
    if not names:
        return list(spec.hosts)
    unknown = sorted(set(names) - {h.name for h in spec.hosts})
    if unknown:
        raise ValueError(f"no such host in the Release: {', '.join(unknown)}")
    return [h for h in spec.hosts if h.name in names]


def unlock(
    spec: ReleaseSpec,
    key: bytes | Path | None,
    known: bytes | None,
    hosts: list[Host],
    yes: bool,
    *,
    local: LocalSsh | None = None,
) -> int:
    """Show the host locks, ask, remove them; 0 when removed or none held (network I/O, reads stdin)."""
    found = asyncio.run(each_host(spec, key, known, hosts, lock.read_lock, local=local))
    for name, info in found.items():
        print(describe(name, info))
    locked = [h for h in hosts if isinstance(found[h.name], lock.LockInfo)]
    if not locked:
        return 1 if any(isinstance(v, HostError) for v in found.values()) else 0
    if not confirmed(f"Remove {len(locked)} lock(s)? A deploy still running there would no longer be kept out.", yes):
        print("nothing removed", file=sys.stderr)
        return 1
    removed = asyncio.run(each_host(spec, key, known, locked, lock.remove_lock, local=local))
    failed = {name: exc for name, exc in removed.items() if isinstance(exc, HostError)}
    for name, exc in failed.items():
        print(f"{name}: not removed: {exc.message}", file=sys.stderr)
    print(f"removed {len(locked) - len(failed)} lock(s)")
    return 1 if failed else 0


def cluster_credentials(api_client: Any, namespace: str, spec: ReleaseSpec) -> tuple[bytes, bytes | None]:
    """The key and known_hosts from the Release's Secret, read with the caller's rights (calls the API).

    Raises ValueError when there is no usable, opted-in Secret.
    """
    from kubernetes import client  # noqa: PLC0415  (slow import, only when needed)
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    from kapistrano.k8s import credentials  # noqa: PLC0415

    ref = spec.ssh.secret_ref
    if ref is None:
        raise ValueError("spec.ssh.secretRef is not set: use `kapistrano unlock -f FILE --ssh-key ...` instead")
    try:
        secret = client.CoreV1Api(api_client).read_namespaced_secret(ref.name, namespace)
    except ApiException as exc:
        raise ValueError(f"cannot read Secret {namespace}/{ref.name}: {exc.status} {exc.reason}") from None
    labels = secret.metadata.labels if secret.metadata is not None else None
    if not credentials.opted_in(secret.type, labels):
        raise ValueError(f"Secret {namespace}/{ref.name} is not labelled {credentials.OPT_IN_LABEL}=true")
    try:
        data = {str(k): str(v) for k, v in (secret.data or {}).items()}
        found = credentials.parse(f"{namespace}/{ref.name}", data, spec.ssh.insecure_skip_host_key_check)
    except credentials.CredentialsProblem as problem:
        raise ValueError(problem.message) from None
    return found.private_key, found.known_hosts


def cmd_unlock(args: argparse.Namespace, releases: Any) -> int:
    """`kubectl kapistrano unlock RELEASE`: the Release and its Secret from the cluster (calls the API, network I/O)."""
    from kapistrano.api.release import ReleaseFileError, parse_release  # noqa: PLC0415

    obj = releases.get(args.name)
    try:
        release = parse_release({key: value for key, value in obj.items() if key != "status"})
        hosts = selected(release.spec, args.host)
        key, known = cluster_credentials(releases.api.api_client, releases.namespace, release.spec)
    except ReleaseFileError as exc:
        print("error: " + "; ".join(exc.problems), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return unlock(release.spec, key, known, hosts, args.yes)
