"""`--hosts` / `--roles` of the command line on the Rails-like example: which hosts and hooks are left."""

from __future__ import annotations

from pathlib import Path

import pytest
from kapistrano.api.release import load_releases
from kapistrano.cli.common import CliError, only_hosts

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "rails-app.yaml"


def test_roles_worker_keeps_the_workers_and_drops_the_migration_of_the_primary_it_leaves_out() -> None:
    (release,) = load_releases(EXAMPLE)
    workers = only_hosts(release, None, "worker").spec
    assert [h.name for h in workers.hosts] == ["worker-1", "worker-2", "worker-3"]
    assert workers.once_hooks == [], "a worker host would run the db migration"
    assert [h.name for h in workers.hooks.after_update] == ["bundle"]


def test_a_filter_that_keeps_the_primary_keeps_its_migration() -> None:
    (release,) = load_releases(EXAMPLE)
    web = only_hosts(release, None, "web").spec
    assert [h.name for h in web.hosts] == ["web-1", "web-2"]
    assert [h.name for h in web.once_hooks] == ["db-migrate"]
    assert web.primary_host == "web-1"
    assert only_hosts(release, None, None) is release


def test_hosts_and_roles_narrow_together_and_unknown_or_empty_selections_are_errors() -> None:
    (release,) = load_releases(EXAMPLE)
    assert [h.name for h in only_hosts(release, "web-2, worker-1", "worker").spec.hosts] == ["worker-1"]
    with pytest.raises(CliError, match="no such host in the Release: web-9"):
        only_hosts(release, "web-9", None)
    with pytest.raises(CliError, match="no host of the Release matches"):
        only_hosts(release, "web-1", "worker")
