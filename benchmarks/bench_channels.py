#!/usr/bin/env python3
"""SSH channels (sshd sessions) one host step costs: observe, and publish with its bookkeeping.

Deploys v1 of the sample worker (one pidfile instance, httpGet readiness) on one lab host, then
counts the exec channels and direct-tcpip channels of the driver's connection for: an observe of
the host, the publish of v2 (switch, restart, readiness, orphans, revisions.log and cleanup), and
the observe after it. Every exec channel is one sshd session (fork + exec of a shell on the host).

    python -m benchmarks.bench_channels      (as root)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from kapistrano.api.release import parse_release
from kapistrano.engine.events import HostEvent
from kapistrano.engine.rollout import Desired, Result, Rollout
from kapistrano.engine.ssh_driver import SshHostDriver, driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.lab import HostLab
from kapistrano.lab.sample_app import lab_release, worker_service

from benchmarks.bench_rolling import make_versions


def _manifest(lab: HostLab, source: str, version: str) -> dict[str, object]:
    """The Release of the sample worker on the lab (pure)."""
    service = worker_service(drain=0.2, boot=0.2, readiness={"periodSeconds": 0.05, "failureThreshold": 400})
    return lab_release(lab, "chan", services=[service], application="chan", version=version, source={"path": source})


async def _deploy(lab: HostLab, doc: dict[str, object], state: Path) -> None:
    """Roll a Release out to the end (network I/O)."""
    spec = parse_release(doc).spec

    async def desired() -> Desired:
        return Desired(spec)

    drivers = driver_factory(lab.client_key, lab.known_hosts)
    rollout = Rollout(source=desired, drivers=drivers, store=FileStatusStore(state), owner="bench")
    try:
        outcome = await rollout.run()
    finally:
        await rollout.close()
    if outcome.result != Result.READY:
        raise SystemExit(f"deploy failed: {outcome.message}")


def _count(driver: SshHostDriver) -> tuple[int, int]:
    """(exec channels, tcp channels) the driver's connection opened so far (pure read)."""
    conn = driver.conn
    return conn.exec_channels, conn.tcp_channels


async def measure(lab: HostLab, sources: dict[str, str], state: Path) -> dict[str, tuple[int, int]]:
    """Channels per step on one host (network I/O)."""
    await _deploy(lab, _manifest(lab, sources["v1"], "v1"), state)
    spec = parse_release(_manifest(lab, sources["v2"], "v2")).spec
    driver = driver_factory(lab.client_key, lab.known_hosts)(spec, spec.hosts[0])
    assert isinstance(driver, SshHostDriver)
    figures: dict[str, tuple[int, int]] = {}

    def ignore(event: HostEvent) -> None:
        """Drop events."""

    try:
        await driver.conn.connect()
        for name, step in (
            ("observe", lambda: driver.observe(spec)),
            ("update", lambda: driver.update(spec, ignore)),
            ("publish", lambda: driver.publish(spec, ignore, run_once_hooks=True)),
            ("bookkeeping", driver.settle),
            ("observe after publish", lambda: driver.observe(spec)),
        ):
            before = _count(driver)
            await step()
            after = _count(driver)
            figures[name] = (after[0] - before[0], after[1] - before[1])
    finally:
        await driver.close()
    return figures


def main() -> None:
    """Print the channels of each step (starts a lab host)."""
    with tempfile.TemporaryDirectory(prefix="kapchan-") as tmp:
        sources = make_versions(Path(tmp), ["v1", "v2"])
        with HostLab(1) as lab:
            figures = asyncio.run(measure(lab, sources, Path(tmp) / "state.json"))
    print("| step | exec channels | direct-tcpip channels |")
    print("|------|--------------:|----------------------:|")
    for name, (execs, tcps) in figures.items():
        print(f"| {name} | {execs} | {tcps} |")


if __name__ == "__main__":
    main()
