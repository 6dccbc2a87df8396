"""`kubectl kapistrano status RELEASE --role ROLE`: only the hosts of that role are listed."""

from __future__ import annotations

from typing import Any

import pytest
from kapistrano.cli import kubectl_plugin as kp
from kapistrano.cli import plugin_main
from kapistrano.cli.plugin_roles import NoSuchRole, with_role


def shop() -> dict[str, Any]:
    """A Release of two web hosts (one also db) and two workers, with a status (pure)."""
    hosts = [
        {"name": "web-1", "phase": "Ready", "version": "v2", "ready": True, "roles": ["web", "db"]},
        {"name": "web-2", "phase": "Ready", "version": "v2", "ready": True, "roles": ["web"]},
        {"name": "worker-1", "phase": "Restarting", "version": "v1", "ready": False, "roles": ["worker"]},
        {"name": "worker-2", "phase": "Pending", "version": "v1", "ready": True, "roles": ["worker"]},
    ]
    status = {"observedGeneration": 2, "phase": "Progressing", "ready": "3/4", "hosts": hosts}
    return {
        "metadata": {"name": "shop", "namespace": "deploy", "generation": 2},
        "spec": {"version": "v2"},
        "status": status,
    }


def host_rows(report: str) -> list[str]:
    """The host names of a status report's host table (pure)."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HOST "))
    rows = []
    for line in lines[start + 1 :]:
        if not line:
            break
        rows.append(line.split()[0])
    return rows


def test_status_with_a_role_lists_only_the_hosts_of_that_role() -> None:
    assert host_rows(kp.format_status(with_role(shop(), "worker"))) == ["worker-1", "worker-2"]
    assert host_rows(kp.format_status(with_role(shop(), "db"))) == ["web-1"]
    assert host_rows(kp.format_status(shop())) == ["web-1", "web-2", "worker-1", "worker-2"]


def test_the_role_filter_leaves_the_release_alone_and_names_the_roles_there_are() -> None:
    obj = shop()
    with_role(obj, "web")
    assert len(obj["status"]["hosts"]) == 4, "the object read from the API was changed"
    with pytest.raises(NoSuchRole, match=r"no host of the Release has the role 'cron' \(roles: db, web, worker\)"):
        with_role(obj, "cron")
    bare = {"metadata": {"name": "shop"}, "spec": {"version": "v2"}}
    assert with_role(bare, "web") is bare


def test_status_takes_a_role_option() -> None:
    args = plugin_main.build_parser().parse_args(["status", "release/shop", "--role", "worker"])
    assert (args.name, args.role) == ("shop", "worker")
    assert plugin_main.build_parser().parse_args(["status", "shop"]).role is None
