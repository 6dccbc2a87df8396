"""`kapistrano plan -f release.yaml`: read the hosts and say what apply would do, changing nothing."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kapistrano.cli.common import CliError, add_release_args, pick_release
from kapistrano.cli.inspect import intent, next_plan, observe
from kapistrano.engine.rollout import utcnow
from kapistrano.plan import ActionKind, max_unavailable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the plan subcommand (changes the parser)."""
    parser = subparsers.add_parser("plan", help="show what apply would do on each host, changing nothing")
    add_release_args(parser)
    parser.add_argument("--state", type=Path, help="status file (default: next to the Release file)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano plan` (network I/O, read-only on the hosts)."""
    console = Console()
    try:
        release = pick_release(args.filename, args.name)
        observed, status = asyncio.run(observe(release, args))
    except CliError as exc:
        console.print(f"error: {exc}", style="red", highlight=False)
        return 1
    spec = release.spec
    result = next_plan(release, observed, status, utcnow())
    kinds = {a.host: a.kind for a in result.actions}
    first = {a.host for a in result.actions if a.kind == ActionKind.PUBLISH}
    if not first and any(a.kind == ActionKind.UPDATE for a in result.actions):
        pending = [h.name for h in spec.hosts if observed[h.name].version != spec.version]
        first = set(pending[: max_unavailable(spec.strategy.max_unavailable, len(spec.hosts))])
    table = Table(title=f"release {release.metadata.name}: {spec.version} on {len(spec.hosts)} hosts")
    for column in ("HOST", "ADDRESS", "VERSION", "RELEASE", "READY", "PLAN"):
        table.add_column(column)
    for host in spec.hosts:
        obs = observed[host.name]
        ready = "-" if obs.ready is None else ("yes" if obs.ready else "no")
        table.add_row(
            host.name, host.address, obs.version or "-", obs.release or "-", ready, intent(release, obs, first, kinds)
        )
    console.print(table)
    budget = max_unavailable(spec.strategy.max_unavailable, len(spec.hosts))
    console.print(f"hosts restart in spec order, at most {budget} at a time; {result.status.message}", highlight=False)
    return 0
