"""`kapistrano status -f release.yaml`: read the hosts and print their actual state."""

from __future__ import annotations

import argparse

from rich.console import Console

from kapistrano.api.release import Release
from kapistrano.api.status import ReleaseStatus
from kapistrano.cli.display import status_table
from kapistrano.cli.inspect import next_plan, register_reader
from kapistrano.engine.rollout import utcnow
from kapistrano.plan import HostObservation

#: Exit status when the hosts are readable but not all ready on spec.version.
NOT_READY = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the status subcommand (changes the parser)."""
    register_reader(subparsers, "status", "read the hosts and print where each one is", report)


def report(console: Console, release: Release, observed: dict[str, HostObservation], saved: ReleaseStatus) -> int:
    """Print the status the hosts show now; 0 when every host is ready on the version (writes to the terminal)."""
    # The same status the operator would write, computed from what the hosts say now.
    status = next_plan(release, observed, saved, utcnow()).status
    console.print(status_table(status, f"release {release.metadata.name}"))
    return 0 if status.phase == "Ready" else NOT_READY
