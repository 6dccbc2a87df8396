"""Seed workloads on the lab hosts: release sources from tests/workloads/apps, rollouts, samplers, load loops.

A `Workload` copies one app directory per version into a directory every lab host sees and rolls
Releases of it out, either with `kapistrano apply` (a process) or with the in-process engine. While a
rollout runs, a `Sampler` measures something every period (live sidekiq processes, queue consumers) and
`Loop`s produce work (jobs, messages, HTTP requests); both are threads with a bound on iterations.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kapistrano.api.release import parse_release
from kapistrano.engine.rollout import Desired, Outcome, Result, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.lab import HostLab

APPS = Path(__file__).parent / "apps"
LINKED_DIRS = ["log", "tmp/pids"]


@dataclass
class Workload:
    """Versions of one app under apps/ and Releases of it for every host of a lab."""

    lab: HostLab
    app: str
    application: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kapwork-")))

    @property
    def deploy_to(self) -> str:
        """The default deployTo of the application (pure)."""
        return f"/var/www/{self.application}"

    def source(self, version: str) -> str:
        """Copy the app into a directory for `version` (with a VERSION file); its path (side effect: files)."""
        path = self.root / "src" / version
        if not path.exists():
            shutil.copytree(APPS / self.app, path)
            (path / "VERSION").write_text(version + "\n")
        return str(path)

    def manifest(self, version: str, services: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        """A Release document for `version` of the app on every lab host (copies the source)."""
        body = {
            "application": self.application,
            "version": version,
            "source": {"path": self.source(version)},
            "linkedDirs": LINKED_DIRS,
            "hosts": self.lab.release_yaml_hosts(),
            "ssh": {"user": "root", "connectTimeoutSeconds": 3},
            "services": services,
            **spec,
        }
        meta = {"name": self.application}
        return {"apiVersion": "kapistrano.dev/v1alpha1", "kind": "Release", "metadata": meta, "spec": body}

    def _apply_command(self, document: dict[str, Any], tag: str) -> list[str]:
        """Write the Release to a file; the `kapistrano apply` command line for it (side effect: a file)."""
        path = self.root / f"release-{tag}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        command = [sys.executable, "-m", "kapistrano.cli.main", "apply", "-f", str(path)]
        command += ["--ssh-key", str(self.lab.client_key), "--known-hosts", str(self.lab.known_hosts)]
        return [*command, "--state", str(self.root / f"state-{tag}.json")]

    def apply_cli(self, document: dict[str, Any], timeout: float = 120, extra: tuple[str, ...] = ()) -> str:
        """`kapistrano apply -f release.yaml [extra]` to the end; its output; fails unless it exits 0 (a process)."""
        command = [*self._apply_command(document, "all"), *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"kapistrano apply failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def apply_cli_every_host_at_once(self, document: dict[str, Any], timeout: float = 120) -> None:
        """What `cap deploy` does: every host restarted at the same time, nobody waiting for another.

        One `kapistrano apply` per host (a Release of that host alone), all running in parallel
        (processes). A single Release with maxUnavailable "100%" is not used for this: the engine
        publishes its first host on its own before the others.
        """
        processes = []
        for host in document["spec"]["hosts"]:
            single = {**document, "spec": {**document["spec"], "hosts": [host]}}
            command = self._apply_command(single, str(host["name"]))
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = []
        for process in processes:
            try:
                out, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate(timeout=30)
            outputs.append((process.returncode, out))
        failed = [out for code, out in outputs if code != 0]
        assert not failed, "kapistrano apply failed:\n" + "\n".join(failed)

    def apply_engine(self, document: dict[str, Any], timeout: float = 120) -> Outcome:
        """The in-process engine to the end; fails unless the release becomes Ready (network I/O)."""
        spec = parse_release(document).spec

        async def desired() -> Desired:
            return Desired(spec)

        async def run() -> Outcome:
            rollout = Rollout(
                source=desired,
                drivers=driver_factory(self.lab.client_key, self.lab.known_hosts),
                store=FileStatusStore(self.root / "engine-state.json"),
                owner=f"test:{self.application}",
                poll_interval=0.2,
            )
            try:
                return await asyncio.wait_for(rollout.run(), timeout)
            finally:
                await rollout.close()

        outcome = asyncio.run(run())
        assert outcome.result == Result.READY, outcome.message
        return outcome

    def shared(self, host_name: str, relative: str) -> Path:
        """Where <deployTo>/shared/<relative> of a host lives on the root filesystem (pure)."""
        return self.lab.host(host_name).path(f"{self.deploy_to}/shared/{relative}")

    def current_version(self, host_name: str) -> str:
        """The VERSION of the release `current` points to on a host (runs a command in the host)."""
        return self.lab.host(host_name).exec(["cat", f"{self.deploy_to}/current/VERSION"]).stdout.strip()

    def close(self) -> None:
        """Remove the sources."""
        shutil.rmtree(self.root, ignore_errors=True)


class Sampler(threading.Thread):
    """Calls `probe` every `period` seconds until stopped (at most `limit` times); keeps (time, value)."""

    def __init__(self, probe: Callable[[], int], period: float = 0.1, limit: int = 3000) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.period = period
        self.limit = limit
        self.samples: list[tuple[float, int]] = []
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        tick = time.monotonic()
        for _ in range(self.limit):
            if self.halt.is_set():
                return
            try:
                self.samples.append((time.monotonic(), self.probe()))
            except Exception as exc:  # a failed sample is reported by the test
                self.errors.append(repr(exc))
            tick += self.period
            self.halt.wait(max(0.0, tick - time.monotonic()))

    def values(self) -> list[int]:
        """The sampled values in order."""
        return [value for _, value in self.samples]

    def max_gap(self) -> float:
        """The longest time between two consecutive samples, in seconds."""
        times = [t for t, _ in self.samples]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def zero_seconds(self) -> float:
        """How long the value stayed at 0 or below, summed over sample intervals (approximate)."""
        return sum(b[0] - a[0] for a, b in zip(self.samples, self.samples[1:], strict=False) if a[1] <= 0)


class Loop(threading.Thread):
    """Calls `step(i)` until stopped (at most `limit` times), waiting `period` between calls."""

    def __init__(self, step: Callable[[int], None], period: float = 0.0, limit: int = 5000) -> None:
        super().__init__(daemon=True)
        self.step = step
        self.period = period
        self.limit = limit
        self.done = 0
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        for i in range(self.limit):
            if self.halt.is_set():
                return
            try:
                self.step(i)
            except Exception as exc:  # failures are what the test counts
                self.errors.append(repr(exc))
            self.done += 1
            if self.period:
                self.halt.wait(self.period)


@contextmanager
def running(*threads: Sampler | Loop) -> Iterator[None]:
    """Run the threads during the block; stop and join them afterwards (threads)."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for thread in threads:
            thread.halt.set()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{thread!r} did not stop"


def report(title: str, **figures: object) -> None:
    """Print measured figures on one line (shown with pytest -s)."""
    print(f"[{title}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
