"""`kapistrano status -f release.yaml`: read the hosts and print their actual state."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from kapistrano.cli.common import CliError, add_release_args, pick_release
from kapistrano.cli.display import status_table
from kapistrano.cli.inspect import next_plan, observe
from kapistrano.engine.rollout import utcnow


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the status subcommand (changes the parser)."""
    parser = subparsers.add_parser("status", help="read the hosts and print where each one is")
    add_release_args(parser)
    parser.add_argument("--state", type=Path, help="status file (default: next to the Release file)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano status`: exit 0 when every host is ready on spec.version (network I/O)."""
    console = Console()
    try:
        release = pick_release(args.filename, args.name)
        observed, saved = asyncio.run(observe(release, args))
    except CliError as exc:
        console.print(f"error: {exc}", style="red", highlight=False)
        return 1
    # The same status the operator would write, computed from what the hosts say now.
    status = next_plan(release, observed, saved, utcnow()).status
    console.print(status_table(status, f"release {release.metadata.name}"))
    return 0 if status.phase == "Ready" else 3
