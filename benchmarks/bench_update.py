"""How long the parallel updating phase (git source) takes on 1, 5 and 10 real lab hosts.

Run as root from the repository root:

    .venv/bin/python -m benchmarks.bench_update [--rounds 3]

Each round starts a fresh lab (cold: no mirror yet, so every host clones) and then runs a second
version on the same hosts (warm: mirror update + export). Prints wall seconds and the per-host mean.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

from kapistrano.api.spec import GitSource, Source
from kapistrano.hosts import fetch
from kapistrano.hosts.ssh import SshConnection
from kapistrano.lab import HostLab

from tests.integration.hostkit import GitServer, connections, git_server

APP = "/var/www/app"
SIZES = (1, 5, 10)


async def _phase(conns: Sequence[SshConnection], server: GitServer, lab: HostLab, version: str) -> float:
    """One updating phase over all hosts; returns wall seconds (side effects: releases on hosts)."""
    inputs = fetch.UpdateInputs(APP, version, Source(git=GitSource(url=server.url(lab.hosts[0]))), git_ref=version)
    started = time.monotonic()
    results = await fetch.update_hosts(conns, inputs)
    elapsed = time.monotonic() - started
    failed = [f"{r.host}: {r.error}" for r in results.values() if not r.ok]
    if failed:
        raise RuntimeError("; ".join(failed))
    return elapsed


async def _round(count: int, server: GitServer) -> tuple[float, float]:
    """Cold and warm wall seconds for one fresh lab of `count` hosts (side effects: a lab)."""
    with HostLab(count) as lab:
        conns = connections(lab)
        try:
            cold = await _phase(conns, server, lab, "v1")
            warm = await _phase(conns, server, lab, "v2")
        finally:
            await asyncio.gather(*(c.close() for c in conns))
    return cold, warm


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print a Markdown table (side effects: labs, a git daemon)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print("| hosts | cold wall s (clone) | cold s/host | warm wall s (update) | warm s/host |")
    print("|------:|--------------------:|------------:|---------------------:|------------:|")
    with git_server() as server:
        files = {f"lib/file{i}.rb": f"# {i}\n" * 50 for i in range(200)}
        server.commit_release("v1", files)
        server.commit_release("v2", {**files, "app.rb": "puts 2\n"})
        for count in SIZES:
            runs = [asyncio.run(_round(count, server)) for _ in range(args.rounds)]
            cold = statistics.median(r[0] for r in runs)
            warm = statistics.median(r[1] for r in runs)
            print(f"| {count} | {cold:.2f} | {cold / count:.2f} | {warm:.2f} | {warm / count:.2f} |", flush=True)


if __name__ == "__main__":
    main()
