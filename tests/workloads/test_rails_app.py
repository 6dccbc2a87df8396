"""The Rails-like example (manifests/examples/rails-app.yaml) on five lab hosts: unicorn web, sidekiq workers.

The example's hosts, roles, primary, hooks, service managers and budgets are kept; its addresses,
source and commands are swapped for the lab's: Debian's unicorn (graceful) on the two web hosts,
Debian's sidekiq (pidfile, TSTP until drained, then TERM) with the test's own redis-server on the three
workers, and a `db-migrate` hook that appends to a file every host sees. While v1 -> v2 rolls out, a
sampler watches every 20 ms, from the hosts' own files and from Redis, which hosts are restarting: a
web host while unicorn's old master still runs beside the new one (unicorn.pid.oldbin) or no master
runs, a worker host while its sidekiq is not a live, unquiet process with a heartbeat.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kapistrano.lab import HostLab, procs

from ..integration.safety import read_pid
from .kit import APPS, Workload, report
from .servers import RedisServer, Resp
from .test_sidekiq import FRESH_SECONDS, sidekiq_service
from .test_unicorn import web_service

pytestmark = [
    pytest.mark.workloads,
    pytest.mark.skipif(shutil.which("unicorn") is None, reason="Debian's unicorn is not installed"),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "rails-app.yaml"
APPLICATION = "shop"
SHARED = f"/var/www/{APPLICATION}/shared"
WEB, WORKERS = ["host1", "host2"], ["host3", "host4", "host5"]


class RailsApp(Workload):
    """One source with both apps of tests/workloads/apps: unicorn's Rack app and sidekiq's jobs."""

    def source(self, version: str) -> str:
        """Copy both apps into one directory for `version` (side effect: files)."""
        path = self.root / "src" / version
        if not path.exists():
            for app in ("unicorn", "sidekiq"):
                shutil.copytree(APPS / app, path, dirs_exist_ok=True)
            (path / "VERSION").write_text(version + "\n")
        return str(path)


def release(work: RailsApp, redis: RedisServer, version: str) -> dict[str, Any]:
    """The example Release with the lab's hosts, source and commands (reads the example, copies the source)."""
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec = document["spec"]
    lab_hosts = work.lab.release_yaml_hosts()
    assert len(spec["hosts"]) == len(lab_hosts) == 5
    spec["hosts"] = [
        {**lab_host, "roles": host["roles"], "primary": host.get("primary", False)}
        for host, lab_host in zip(spec["hosts"], lab_hosts, strict=True)
    ]
    services = {service["name"]: service for service in spec["services"]}
    unicorn = {**web_service(APPLICATION), "name": "unicorn", "roles": services["unicorn"]["roles"]}
    sidekiq = {**sidekiq_service(redis, work.lab), "roles": services["sidekiq"]["roles"]}
    assert (services["unicorn"]["manager"], services["sidekiq"]["manager"]) == ("graceful", "pidfile")
    assert services["sidekiq"]["pidfile"]["quietSignal"] == sidekiq["pidfile"]["quietSignal"] == "TSTP"
    (migrate,) = spec["hooks"]["beforePublish"]
    migrate["run"] = f'echo "$(hostname) $(date +%s.%N) $(cat VERSION)" >> {work.root}/migrations.log'
    spec |= {
        "version": version,
        "source": {"path": work.source(version)},
        "linkedFiles": [],
        "ssh": {"user": "root", "connectTimeoutSeconds": 3},
        "services": [unicorn, sidekiq],
        "hooks": {"beforePublish": [migrate]},
    }
    document["metadata"] = {"name": APPLICATION}
    return document


class Restarts(threading.Thread):
    """Samples every 20 ms which hosts are restarting; keeps (wall-clock time, web set, worker set)."""

    def __init__(self, lab: HostLab, client: Resp) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.client = client
        self.samples: list[tuple[float, set[str], set[str]]] = []
        self.halt = threading.Event()

    def web_restarting(self, name: str) -> bool:
        """unicorn's old master still runs beside the new one, or no master runs (reads the host's files)."""
        pidfile = self.lab.host(name).path(f"{SHARED}/tmp/pids/unicorn.pid")
        pid = read_pid(pidfile)
        return pidfile.with_name("unicorn.pid.oldbin").exists() or pid is None or not procs.is_alive(pid)

    def serving_sidekiq_pids(self) -> set[int]:
        """Pids of sidekiq processes with a fresh heartbeat that are not quiet (network I/O)."""
        members = [m for m in self.client.call("SMEMBERS", "processes") or [] if isinstance(m, bytes)]
        replies = self.client.pipeline(*[("HMGET", m, "beat", "quiet") for m in members]) if members else []
        now, serving = time.time(), set()
        for member, reply in zip(members, replies, strict=True):
            beat, quiet = reply if isinstance(reply, list) else (None, None)
            if isinstance(beat, bytes) and now - float(beat) < FRESH_SECONDS and quiet != b"true":
                serving.add(int(member.decode().split(":")[1]))
        return serving

    def worker_restarting(self, name: str, serving: set[int]) -> bool:
        """The host's sidekiq (its pid file) is not serving (reads the host's files)."""
        return read_pid(self.lab.host(name).path(f"{SHARED}/tmp/pids/sidekiq.0.pid")) not in serving

    def run(self) -> None:
        for _ in range(30000):
            if self.halt.wait(0.02):
                return
            serving = self.serving_sidekiq_pids()
            web = {h for h in WEB if self.web_restarting(h)}
            workers = {h for h in WORKERS if self.worker_restarting(h, serving)}
            self.samples.append((time.time(), web, workers))


def migrations(work: RailsApp) -> list[tuple[str, float, str]]:
    """(host, wall-clock time, version) of every migration run so far (reads the shared file)."""
    path = work.root / "migrations.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(host, float(stamp), version) for host, stamp, version in (line.split() for line in lines)]


def master_pids(work: RailsApp) -> dict[str, int | None]:
    """The unicorn master pid of each web host (reads the hosts' files)."""
    return {h: read_pid(work.lab.host(h).path(f"{SHARED}/tmp/pids/unicorn.pid")) for h in WEB}


@pytest.fixture
def work(lab_factory: Any) -> Iterator[RailsApp]:
    """The Rails-like app on five lab hosts; its sources are removed afterwards."""
    made = RailsApp(lab_factory(5), "unicorn", application=APPLICATION)
    try:
        yield made
    finally:
        made.close()


def test_the_rails_example_rolls_each_role_within_its_budget_after_one_migration(
    work: RailsApp, redis: RedisServer
) -> None:
    work.apply_cli(release(work, redis, "v1"), timeout=300)
    assert [(h, v) for h, _, v in migrations(work)] == [("host1", "v1")]
    client = redis.client()
    sampler = Restarts(work.lab, client)
    sampler.start()
    try:
        work.apply_cli(release(work, redis, "v2"), timeout=300)
    finally:
        sampler.halt.set()
        sampler.join(timeout=30)
        client.close()

    runs = [(h, t) for h, t, v in migrations(work) if v == "v2"]
    assert [h for h, _ in runs] == ["host1"], f"one migration per rollout, on the primary: {runs}"
    restarting = [t for t, web, workers in sampler.samples if web or workers]
    assert restarting, "the sampler saw no host restart"
    assert runs[0][1] < min(restarting), "a host restarted before the migration ran"
    most_web = max(len(web) for _, web, _ in sampler.samples)
    most_workers = max(len(workers) for _, _, workers in sampler.samples)
    assert most_web == 1, f"web hosts restarting at once: {most_web} (budget 1)"
    assert most_workers == 1, f"worker hosts restarting at once: {most_workers} (budget 50% of 3 = 1)"
    assert_each_role_ran_only_its_service(work)
    assert {work.current_version(h) for h in WEB + WORKERS} == {"v2"}
    report("rails", samples=len(sampler.samples), web_at_once=most_web, workers_at_once=most_workers)

    masters = master_pids(work)
    work.apply_cli(release(work, redis, "v3"), timeout=300, extra=("--roles", "worker"))
    assert [work.current_version(h) for h in WEB] == ["v2", "v2"]
    assert [work.current_version(h) for h in WORKERS] == ["v3", "v3", "v3"]
    assert master_pids(work) == masters, "--roles worker reloaded a web host's unicorn"
    for host in WEB:
        releases = work.lab.host(host).exec(["ls", f"/var/www/{APPLICATION}/releases"]).stdout.split()
        assert len(releases) == 2, f"--roles worker put a release on {host}: {releases}"
    assert [v for _, _, v in migrations(work)] == ["v1", "v2"], "--roles worker ran the migration"


def assert_each_role_ran_only_its_service(work: RailsApp) -> None:
    """No web host ever ran sidekiq, no worker host unicorn (reads the hosts' files)."""
    for host in WEB:
        path = work.lab.host(host).path
        assert not path(f"{SHARED}/tmp/pids/sidekiq.0.pid").exists(), f"sidekiq ran on {host}"
        assert not path(f"{SHARED}/log/sidekiq.log").exists(), f"sidekiq ran on {host}"
    for host in WORKERS:
        path = work.lab.host(host).path
        assert not path(f"{SHARED}/tmp/pids/unicorn.pid").exists(), f"unicorn ran on {host}"
        assert not path(f"{SHARED}/log/unicorn.stderr.log").exists(), f"unicorn ran on {host}"
