"""Roles on real hosts: web and worker hosts roll within their own budgets, migrations run once on the
primary before any restart, and `kapistrano apply --roles worker` touches no web host.

Five lab hosts: host1-2 are web, host3-5 workers (host5 also db, so it is the primary of the db
migration). Each role runs its own sample-worker service; a monitor samples every 50 ms which hosts
have no serving worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kapistrano.lab.sample_app import lab_release, worker_service

from .appkit import App, AppFactory
from .safety import Monitor, current_release, release_version

KAPISTRANO = Path(sys.executable).with_name("kapistrano")
WEB, WORKERS = ["host1", "host2"], ["host3", "host4", "host5"]
ROLES = {"host1": ["web"], "host2": ["web"], "host3": ["worker"], "host4": ["worker"], "host5": ["worker", "db"]}


@pytest.fixture
def app(app_factory: AppFactory) -> App:
    """Five lab hosts; workers drain for 1 s and boot in 0.2 s."""
    return app_factory(5, drain=1.0, boot=0.2)


def release_file(app: App, version: str) -> Path:
    """A Release of web and worker services with role budgets and a once migration (writes release.yaml)."""
    services = []
    for name, role in (("web", "web"), ("jobs", "worker")):
        service = worker_service(drain=app.drain, boot=app.boot, events=app.events)
        services.append(service | {"name": name, "roles": [role]})
    migrate = f'echo "$(hostname) $(date +%s.%N)" >> {app.root}/migrations.log'
    document = lab_release(
        app.lab,
        "shop",
        services=services,
        application="app",
        version=version,
        source={"path": app.version(version)},
        ssh={"user": "root", "connectTimeoutSeconds": 3},
        hooks={"beforePublish": [{"name": "migrate", "run": migrate, "once": True, "roles": ["db"]}]},
        strategy={"maxUnavailable": "100%", "roles": {"web": {"maxUnavailable": 1}, "worker": {"maxUnavailable": 2}}},
    )
    for host in document["spec"]["hosts"]:
        host["roles"] = ROLES[host["name"]]
    path = app.root / "release.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def apply(app: App, release: Path, *extra: str) -> None:
    """`kapistrano apply` to the end; fails the test unless it exits 0 (a process)."""
    keys = ["--ssh-key", str(app.lab.client_key), "--known-hosts", str(app.lab.known_hosts)]
    done = subprocess.run(
        [str(KAPISTRANO), "apply", "-f", str(release), *keys, *extra],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def version_of(app: App, host: str) -> str:
    """The version `current` points at on a host (reads its files)."""
    return release_version(app, host, current_release(app, host))


def migrations(app: App) -> list[tuple[str, float]]:
    """(host, time) of every migration run so far (reads the shared file)."""
    path = app.root / "migrations.log"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(line.split()[0], float(line.split()[1])) for line in lines if line.strip()]


def test_each_role_rolls_within_its_budget_after_one_migration_on_the_primary(app: App) -> None:
    apply(app, release_file(app, "v1"))
    before = len(app.read_events())
    with Monitor(app) as monitor:
        apply(app, release_file(app, "v2"))
    events = app.read_events()[before:]

    assert [host for host, _ in migrations(app)] == ["host5", "host5"], "one migration per rollout, on the primary"
    first_stop = min(float(e["time"]) for e in events if e["event"] == "draining")
    assert migrations(app)[-1][1] < first_stop, "a worker stopped before the migration ran"
    web_down = max(len(down & set(WEB)) for _, down in monitor.samples)
    workers_down = max(len(down & set(WORKERS)) for _, down in monitor.samples)
    assert web_down == 1, f"web hosts down at once: {web_down}"
    assert workers_down == 2, f"worker hosts down at once: {workers_down} (budget 2)"
    for host in WEB:
        assert not app.lab.host(host).path("/var/www/app/shared/log/jobs.log").exists(), "jobs ran on a web host"
    for host in WORKERS:
        assert not app.lab.host(host).path("/var/www/app/shared/log/web.log").exists(), "web ran on a worker host"
    assert {version_of(app, h) for h in WEB + WORKERS} == {"v2"}


def test_apply_with_roles_worker_touches_no_web_host(app: App) -> None:
    apply(app, release_file(app, "v1"))
    before = len(app.read_events())
    apply(app, release_file(app, "v2"), "--roles", "worker")
    events = app.read_events()[before:]
    assert {e["host"] for e in events} == set(WORKERS), "a web host's worker was touched"
    assert [version_of(app, h) for h in WEB] == ["v1", "v1"]
    assert [version_of(app, h) for h in WORKERS] == ["v2", "v2", "v2"]
