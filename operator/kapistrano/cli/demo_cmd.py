"""`kapistrano demo`: local SSH test hosts, a sample worker, and a live rolling release across them.

Needs root (the hosts are sshd processes in their own network and mount namespaces). Everything it
starts is stopped and removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from kapistrano.api.release import Release, parse_release
from kapistrano.cli.apply_cmd import apply_release
from kapistrano.engine.rollout import Result
from kapistrano.lab import HostLab, require_lab_support, sample_worker
from kapistrano.lab.sample_app import lab_release, worker_service


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the demo subcommand (changes the parser)."""
    parser = subparsers.add_parser("demo", help="roll a sample worker across local SSH test hosts (needs root)")
    parser.add_argument("--hosts", type=int, default=3, help="number of test hosts (default 3)")
    parser.add_argument("--instances", type=int, default=2, help="worker processes per host (default 2)")
    parser.add_argument("--drain", type=float, default=3.0, help="seconds a worker needs to exit after TERM")
    parser.add_argument(
        "--start-first",
        action="store_true",
        help="replace StartFirst: new workers start beside the old ones, which stop once the new are ready",
    )
    parser.add_argument("--boot", type=float, default=1.0, help="seconds a worker needs to become ready")
    parser.add_argument(
        "--operator",
        action="store_true",
        help="run the operator against a real local kube-apiserver and print kubectl commands to try",
    )
    parser.add_argument(
        "--auto", action="store_true", help="with --operator: apply v1, then roll v2, printing progress, and exit"
    )
    parser.add_argument(
        "--for",
        dest="for_seconds",
        type=float,
        metavar="SECONDS",
        help="with --operator: stop after SECONDS instead of waiting for Ctrl-C",
    )
    parser.set_defaults(func=run)


def _git(repo: Path, *argv: str) -> None:
    """Run git in the demo repository (runs a process)."""
    subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True)


def make_repo(root: Path) -> Path:
    """A git repository with tags v1 and v2 of the sample worker (writes files, runs git)."""
    repo = root / "app"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "demo@kapistrano.dev")
    _git(repo, "config", "user.name", "kapistrano demo")
    shutil.copy(sample_worker.__file__, repo / "worker.py")
    for version in ("v1", "v2"):
        (repo / "VERSION").write_text(version + "\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"sample worker {version}")
        _git(repo, "tag", version)
    return repo


def manifest(lab: HostLab, repo: Path, version: str, args: argparse.Namespace, events: Path) -> dict[str, Any]:
    """The demo Release for one version (pure)."""
    service = worker_service(
        drain=args.drain, boot=args.boot, events=events, instances=args.instances, start_first=args.start_first
    )
    return lab_release(
        lab,
        "demo-workers",
        namespace="demo",
        services=[service],
        application="demo",
        version=version,
        source={"git": {"url": f"file://{repo}"}},
        ssh={"user": "root", "connectTimeoutSeconds": 5},
        strategy={"maxUnavailable": 1},
    )


def max_hosts_down(events: list[dict[str, Any]], hosts: list[str], since: float) -> int:
    """The most hosts with no live worker at any moment after `since`, from start/exit events (pure)."""
    spans: dict[int, list[Any]] = {}
    for e in events:
        span = spans.setdefault(int(e["pid"]), [str(e["host"]), float("inf"), float("inf")])
        if e["event"] == "start":
            span[1] = float(e["time"])
        elif e["event"] == "exit":
            span[2] = float(e["time"])
    moments = sorted(float(e["time"]) for e in events if float(e["time"]) >= since)
    worst = 0
    for t in moments:
        up = {host for host, born, died in spans.values() if born <= t < died}
        worst = max(worst, sum(h not in up for h in hosts))
    return worst


async def _roll(release: Release, args: argparse.Namespace, console: Console) -> Result:
    """One apply with the live table (network I/O)."""
    outcome = await apply_release(release, args, console)
    return outcome.result


def _run_in_lab(lab: HostLab, root: Path, args: argparse.Namespace, console: Console) -> int:
    """Deploy v1, then roll v2 with the live table, then summarise (network I/O, writes files)."""
    repo = make_repo(root)
    events = root / "events.jsonl"
    events.touch()
    apply_args = argparse.Namespace(ssh_key=lab.client_key, known_hosts=lab.known_hosts, state=root / "state.json")
    console.rule("[bold]kapistrano demo")
    console.print(f"{len(lab.hosts)} SSH hosts: " + ", ".join(f"{h.name} ({h.address})" for h in lab.hosts))
    first = parse_release(manifest(lab, repo, "v1", args, events))
    (root / "release.yaml").write_text(yaml.safe_dump(manifest(lab, repo, "v2", args, events), sort_keys=False))
    how = "started beside the old ones (StartFirst)" if args.start_first else "stopped together, then started"
    console.print(f"deploying v1 ({args.instances} workers per host; on a restart they are {how})...")
    if asyncio.run(_roll(first, apply_args, console)) != Result.READY:
        return 1
    console.rule("[bold]rolling v2, one host at a time")
    console.print(f"each worker takes {args.drain}s to drain after TERM and {args.boot}s to become ready")
    since = time.time()
    started = time.monotonic()
    second = parse_release(yaml.safe_load((root / "release.yaml").read_text()))
    result = asyncio.run(_roll(second, apply_args, console))
    elapsed = time.monotonic() - started
    everything = [json.loads(line) for line in events.read_text().splitlines()]
    worst = max_hosts_down(everything, [h.name for h in lab.hosts], since)
    console.print(f"v2 rolled across {len(lab.hosts)} hosts in {elapsed:.1f}s: {result}")
    console.print(f"at most {worst} host(s) had no live worker at any moment (maxUnavailable 1)")
    return 0 if result == Result.READY else 1


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano demo` (starts and stops test hosts)."""
    console = Console()
    if args.operator:
        from kapistrano.cli.demo_operator import run_operator_demo  # noqa: PLC0415  (imports the API client)

        return run_operator_demo(args, console)
    if args.auto or args.for_seconds is not None:
        console.print("--auto and --for need --operator", style="red")
        return 2
    reason = require_lab_support()
    if reason is not None:
        console.print(f"the demo cannot start test hosts here: {reason}", style="red")
        return 1
    root = Path(tempfile.mkdtemp(prefix="kapistrano-demo-"))
    try:
        with HostLab(args.hosts) as lab:
            return _run_in_lab(lab, root, args, console)
    finally:
        shutil.rmtree(root, ignore_errors=True)
