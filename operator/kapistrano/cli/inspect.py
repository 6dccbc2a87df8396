"""Reading hosts without changing them, for `kapistrano plan` and `kapistrano status`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.console import Console

from kapistrano.api.release import Release
from kapistrano.api.status import ReleaseStatus
from kapistrano.cli.common import (
    CliError,
    add_release_args,
    add_ssh_bounds,
    load_credentials,
    owner_of,
    release_for,
    ssh_hub_of,
    state_path,
)
from kapistrano.engine.rollout import Desired, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.plan import ActionKind, HostObservation, Plan, PlanInput, plan

ReaderReport = Callable[[Console, Release, dict[str, HostObservation], ReleaseStatus], int]


def register_reader(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, report: ReaderReport
) -> None:
    """Add a subcommand that reads the hosts of a Release file and reports (changes the parser)."""
    parser = subparsers.add_parser(name, help=help_text)
    add_release_args(parser)
    parser.add_argument("--state", type=Path, help="status file (default: next to the Release file)")
    add_ssh_bounds(parser)

    def run(args: argparse.Namespace) -> int:
        console = Console()
        try:
            release = release_for(args)
            observed, status = asyncio.run(observe(release, args))
        except CliError as exc:
            console.print(f"error: {exc}", style="red", highlight=False)
            return 1
        return report(console, release, observed, status)

    parser.set_defaults(func=run)


async def observe(release: Release, args: argparse.Namespace) -> tuple[dict[str, HostObservation], ReleaseStatus]:
    """Read every host (no lock taken, nothing written) and the saved status (network I/O)."""
    credentials = load_credentials(args, release)
    store = FileStatusStore(state_path(args, release))

    async def desired() -> Desired:
        return Desired(release.spec)

    hub = ssh_hub_of(args)
    rollout = Rollout(
        source=desired,
        drivers=driver_factory(credentials.private_key, credentials.known_hosts, credentials.local, hub=hub),
        store=store,
        owner=owner_of(release),
    )
    try:
        observed = await rollout.observe_all(release.spec, lock=False)
    finally:
        await rollout.close()
        await hub.close()
    return observed, (await store.load()) or ReleaseStatus()


def next_plan(release: Release, observed: dict[str, HostObservation], status: ReleaseStatus, now: datetime) -> Plan:
    """What the planner would decide now (pure)."""
    return plan(
        PlanInput(
            spec=release.spec,
            generation=release.metadata.generation or 1,
            status=status,
            observations=observed,
            now=now,
        )
    )


def intent(release: Release, obs: HostObservation, first: set[str], kinds: dict[str, ActionKind]) -> str:
    """What apply would do to one host, in words (pure)."""
    version = release.spec.version
    if not obs.reachable or obs.error_reason:
        return f"cannot act: {obs.error_reason or 'Unreachable'} {obs.error_message}".strip()
    if obs.name in kinds and kinds[obs.name] == ActionKind.ROLLBACK:
        return "roll back to the previous release"
    if obs.version == version:
        return _intent_on_version(obs)
    steps = [] if obs.has_desired_release else [f"fetch {version}"]
    steps.append("publish and restart" + (" (first)" if obs.name in first else " (later, within maxUnavailable)"))
    if obs.orphans:
        steps.append(f"stop {', '.join(obs.orphans)}")
    return ", then ".join(steps)


def _intent_on_version(obs: HostObservation) -> str:
    """What apply would do to a host already on spec.version, in words (pure)."""
    if obs.orphans:
        return f"stop what the spec no longer names: {', '.join(obs.orphans)}"
    if obs.services_live is False:
        return "restart services (liveness failing; within the budget and its backoff)"
    if obs.ready is False:
        return "restart services (not ready)"
    if obs.services_on_current is False:
        return "restart services (processes run an older release)"
    return "nothing: up to date"
