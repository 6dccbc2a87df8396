"""`kapistrano apply -f release.yaml`: run a rollout to completion from the command line, no cluster needed."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from kapistrano.api.release import Release
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
from kapistrano.cli.display import ProgressView, status_table
from kapistrano.engine.rollout import Desired, Outcome, Result, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the apply subcommand (changes the parser)."""
    parser = subparsers.add_parser("apply", help="roll a Release out to its hosts and wait until done")
    add_release_args(parser)
    parser.add_argument("--state", type=Path, help="status file (default: next to the Release file)")
    parser.add_argument(
        "--retry", action="store_true", help="try a version that failed again (status failedVersion), same version"
    )
    add_ssh_bounds(parser)
    parser.set_defaults(func=run)


async def apply_release(release: Release, args: argparse.Namespace, console: Console) -> Outcome:
    """Run the engine for one Release with a live display (network I/O, writes the state file)."""
    credentials = load_credentials(args, release)
    retry = datetime.now(UTC).isoformat() if getattr(args, "retry", False) else None

    async def desired() -> Desired:
        return Desired(release.spec, generation=release.metadata.generation or 1, retry_token=retry)

    hub = ssh_hub_of(args)
    rollout = Rollout(
        source=desired,
        drivers=driver_factory(credentials.private_key, credentials.known_hosts, credentials.local, hub=hub),
        store=FileStatusStore(state_path(args, release)),
        owner=owner_of(release),
    )
    title = f"release {release.metadata.name}"
    view = ProgressView(console, lambda: rollout.recorder.status if rollout.recorder else None, title)
    rollout.user_emit = view.on_event
    try:
        with view:
            return await rollout.run()
    finally:
        await rollout.close()
        await hub.close()


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano apply` (network I/O)."""
    console = Console()
    try:
        release = release_for(args)
        outcome = asyncio.run(apply_release(release, args, console))
    except CliError as exc:
        console.print(f"error: {exc}", style="red", highlight=False)
        return 1
    if not console.is_terminal:
        console.print(status_table(outcome.status, f"release {release.metadata.name}"))
    if outcome.result == Result.READY:
        console.print(f"release {release.metadata.name}: {outcome.message}", style="green", highlight=False)
        return 0
    console.print(f"release {release.metadata.name}: {outcome.result}: {outcome.message}", style="red", highlight=False)
    return 2 if outcome.result == Result.PAUSED else 1
