"""unicorn (Debian) serving a Rack app on three lab hosts: a rollout under HTTP load fails no request.

Manager graceful (USR2, wait for the new master, readiness through httpGet, QUIT the old one).
unicorn listens on 0.0.0.0 inside each host, so the test process reaches it at the host's address;
one bounded request loop per host runs during v1 -> v2 -> v1 (`kapistrano apply`).
"""

from __future__ import annotations

import http.client
import shutil
from collections import Counter
from typing import Any

import pytest
from kapistrano.lab import HostLab

from .kit import Loop, Workload, report, running

pytestmark = [
    pytest.mark.workloads,
    pytest.mark.skipif(shutil.which("unicorn") is None, reason="Debian's unicorn is not installed"),
]

APPLICATION = "web"
PORT = 8080


def web_service(application: str = APPLICATION) -> dict[str, Any]:
    """unicorn with a graceful reload and an httpGet readiness probe (pure)."""
    config = f"/var/www/{application}/current/config/unicorn.rb"
    graceful = {
        "pidFile": "tmp/pids/unicorn.pid",
        "reloadSignal": "USR2",
        "quitSignal": "QUIT",
        "start": f"exec env DEPLOY_TO=/var/www/{application} PORT={PORT} unicorn -D -c {config}",
        "timeoutSeconds": 30,
    }
    probe = {"httpGet": {"path": "/", "port": PORT}, "periodSeconds": 0.1, "failureThreshold": 100}
    return {"name": "web", "manager": "graceful", "graceful": graceful, "readiness": probe}


class Requests:
    """GET / on one host, back to back; counts answers per version and keeps every failure."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []

    def get(self, _: int) -> None:
        """One request on a new connection (network I/O)."""
        connection = http.client.HTTPConnection(self.address, PORT, timeout=10)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read().decode()
            if response.status != 200 or not body.startswith("ok "):
                self.failures.append(f"{response.status} {body!r}")
                return
            self.versions[body.split()[1]] += 1
        except (OSError, http.client.HTTPException) as exc:
            self.failures.append(repr(exc))
        finally:
            connection.close()


def test_a_rollout_under_load_fails_no_request(lab: HostLab) -> None:
    work = Workload(lab, "unicorn", application=APPLICATION)
    try:
        service = [web_service()]
        work.apply_cli(work.manifest("v1", service, strategy={"maxUnavailable": "100%"}))
        loads = [Requests(host.address) for host in lab.hosts]
        loops = [Loop(load.get, limit=20000) for load in loads]
        with running(*loops):
            for version in ("v2", "v1"):
                work.apply_cli(work.manifest(version, service, strategy={"maxUnavailable": 1}))
            # A loop that used up its bounded count would have watched only part of the rollouts.
            assert all(loop.is_alive() for loop in loops), "a load loop ended before the rollouts did"
        for host in lab.hosts:
            assert work.current_version(host.name) == "v1", host.name
    finally:
        work.close()

    for load in loads:
        assert load.failures == [], f"{load.address}: {load.failures[:5]}"
        assert load.versions["v2"] > 0, f"{load.address} never answered from v2: {load.versions}"
        assert load.versions["v1"] > 0
    assert all(not loop.errors for loop in loops)
    total = sum(sum(load.versions.values()) for load in loads)
    assert total >= 300, "too little traffic to prove anything"
    report(
        "unicorn",
        requests=total,
        failed=sum(len(load.failures) for load in loads),
        per_host={load.address: dict(load.versions) for load in loads},
    )
