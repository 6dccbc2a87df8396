"""Reading hosts without changing them, for `kapistrano plan` and `kapistrano status`."""

from __future__ import annotations

import argparse
from datetime import datetime

from kapistrano.api.release import Release
from kapistrano.api.status import ReleaseStatus
from kapistrano.cli.common import load_credentials, owner_of, state_path
from kapistrano.engine.rollout import Desired, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.plan import ActionKind, HostObservation, Plan, PlanInput, plan


async def observe(release: Release, args: argparse.Namespace) -> tuple[dict[str, HostObservation], ReleaseStatus]:
    """Read every host (no lock taken, nothing written) and the saved status (network I/O)."""
    credentials = load_credentials(args, release)
    store = FileStatusStore(state_path(args, release))

    async def desired() -> Desired:
        return Desired(release.spec)

    rollout = Rollout(
        source=desired,
        drivers=driver_factory(credentials.private_key, credentials.known_hosts),
        store=store,
        owner=owner_of(release),
    )
    try:
        observed = await rollout.observe_all(release.spec, lock=False)
    finally:
        await rollout.close()
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
        if obs.ready is False:
            return "restart services (not ready)"
        if obs.services_on_current is False:
            return "restart services (processes run an older release)"
        return "nothing: up to date"
    steps = [] if obs.has_desired_release else [f"fetch {version}"]
    steps.append("publish and restart" + (" (first)" if obs.name in first else " (later, within maxUnavailable)"))
    return ", then ".join(steps)
