"""`kapistrano plan -f release.yaml`: read the hosts and say what apply would do, changing nothing."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from kapistrano.api.release import Release
from kapistrano.api.status import ReleaseStatus
from kapistrano.cli.display import probe_lines
from kapistrano.cli.inspect import intent, next_plan, register_reader
from kapistrano.engine.rollout import utcnow
from kapistrano.plan import ActionKind, HostObservation, max_unavailable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the plan subcommand (changes the parser)."""
    register_reader(subparsers, "plan", "show what apply would do on each host, changing nothing", report)


def report(console: Console, release: Release, observed: dict[str, HostObservation], status: ReleaseStatus) -> int:
    """Print what apply would do to each host (writes to the terminal)."""
    spec = release.spec
    result = next_plan(release, observed, status, utcnow())
    kinds = {a.host: a.kind for a in result.actions}
    budget = max_unavailable(spec.strategy.max_unavailable, len(spec.hosts))
    first = {a.host for a in result.actions if a.kind == ActionKind.PUBLISH}
    if not first and any(a.kind == ActionKind.UPDATE for a in result.actions):
        pending = [h.name for h in spec.hosts if observed[h.name].version != spec.version]
        first = set(pending[:budget])
    table = Table(title=f"release {release.metadata.name}: {spec.version} on {len(spec.hosts)} hosts")
    for column in ("HOST", "ADDRESS", "VERSION", "RELEASE", "READY", "PLAN"):
        table.add_column(column)
    for host in spec.hosts:
        obs = observed[host.name]
        ready = "-" if obs.ready is None else ("yes" if obs.ready else "no")
        plan_text = intent(release, obs, first, kinds)
        table.add_row(host.name, host.address, obs.version or "-", obs.release or "-", ready, plan_text)
    console.print(table)
    console.print(probe_lines([(h.name, observed[h.name].probe) for h in spec.hosts]))
    console.print(f"hosts restart in spec order, at most {budget} at a time; {result.status.message}", highlight=False)
    return 0
