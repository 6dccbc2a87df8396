"""A sample application on the lab hosts: versions of the sample worker, Release specs, event logs."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kapistrano.api.release import Release, parse_release
from kapistrano.api.spec import ReleaseSpec
from kapistrano.engine.rollout import Desired, Outcome, Rollout
from kapistrano.engine.ssh_driver import SshHostDriver, driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.lab import HostLab, sample_worker
from kapistrano.lab.sample_app import lab_release, worker_service

WORKER = Path(sample_worker.__file__)


@dataclass
class App:
    """Versions of the sample worker in a directory every lab host sees (only /var/www and /run are private)."""

    lab: HostLab
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kapapp-")))
    drain: float = 1.0
    boot: float = 0.3

    def __post_init__(self) -> None:
        self.events = self.root / "events.jsonl"
        self.events.touch()
        self.state = self.root / "state.json"

    def version(self, name: str, *, healthy: bool = True) -> str:
        """Create the source directory of a version; returns its path."""
        path = self.root / "src" / name
        path.mkdir(parents=True, exist_ok=True)
        shutil.copy(WORKER, path / "worker.py")
        (path / "VERSION").write_text(name + "\n")
        (path / "HEALTHY").write_text("yes\n" if healthy else "no\n")
        return str(path)

    def manifest(self, version: str, **spec: Any) -> dict[str, Any]:
        """A Release document for `version` of the sample app on every lab host."""
        service = worker_service(
            drain=self.drain,
            boot=self.boot,
            events=self.events,
            instances=spec.pop("instances", 1),
            readiness=spec.pop("readiness", {}),
        )
        source = {"path": self.version(version, healthy=spec.pop("healthy", True))}
        spec = {"ssh": {"user": "root", "connectTimeoutSeconds": 3}} | spec
        return lab_release(
            self.lab, "app", services=[service], application="app", version=version, source=source, **spec
        )

    def release(self, version: str, **spec: Any) -> Release:
        """The validated Release for `version`."""
        return parse_release(self.manifest(version, **spec))

    def write(self, version: str, **spec: Any) -> Path:
        """Write the Release to release.yaml in the app root; returns its path."""
        path = self.root / "release.yaml"
        path.write_text(yaml.safe_dump(self.manifest(version, **spec), sort_keys=False))
        return path

    def rollout(self, spec: ReleaseSpec) -> Rollout:
        """An engine run for `spec` against the lab, keeping status in the app's state file."""

        async def desired() -> Desired:
            return Desired(spec)

        return Rollout(
            source=desired,
            drivers=driver_factory(self.lab.client_key, self.lab.known_hosts),
            store=FileStatusStore(self.state),
            owner="test:app",
            poll_interval=0.2,
        )

    def driver(self, spec: ReleaseSpec, index: int = 0) -> SshHostDriver:
        """The SSH driver the engine would use for one lab host (close it after use)."""
        return driver_factory(self.lab.client_key, self.lab.known_hosts)(spec, spec.hosts[index])

    async def apply(self, version: str, **spec: Any) -> Outcome:
        """Run the engine to the end for `version`."""
        return await self.apply_manifest(self.manifest(version, **spec))

    async def apply_manifest(self, doc: dict[str, Any]) -> Outcome:
        """Run the engine to the end for a Release document."""
        rollout = self.rollout(parse_release(doc).spec)
        try:
            return await rollout.run()
        finally:
            await rollout.close()

    def read_events(self) -> list[dict[str, Any]]:
        """Every worker event so far, in order of writing."""
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        """Remove the app directory."""
        shutil.rmtree(self.root, ignore_errors=True)


def by_pid(events: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, dict[str, Any]]]]:
    """Events grouped per process: pid -> {event name: event}."""
    groups: dict[int, dict[str, dict[str, Any]]] = {}
    for e in events:
        groups.setdefault(int(e["pid"]), {})[str(e["event"])] = e
    yield from groups.items()


#: app_factory(lab or a host count, drain=..., boot=...) -> the sample app on those hosts (see conftest.py).
AppFactory = Callable[..., App]
