"""`kapistrano apply --retry`: a failed version is rolled out again once its cause is fixed, same version."""

from __future__ import annotations

import json

import pytest

from .appkit import App
from .safety import current_release, release_version
from .test_cli import kapistrano, ssh_args


@pytest.fixture
def app(two_host_app: App) -> App:
    """This module's tests run on two lab hosts."""
    return two_host_app


NEEDED = "/var/www/app/shared/needed.txt"


def test_apply_retry_rolls_out_a_failed_version_once_its_cause_is_fixed(app: App) -> None:
    assert kapistrano("apply", "-f", app.write("v1"), *ssh_args(app)).returncode == 0
    hooks = {"afterUpdate": [{"name": "check", "run": f"test -f {NEEDED}"}]}
    release = app.write("v2", hooks=hooks)
    failed = kapistrano("apply", "-f", release, *ssh_args(app))
    assert failed.returncode == 1, failed.stdout
    assert "HostFailed" in failed.stdout

    for host in app.lab.hosts:
        host.path(NEEDED).write_text("fixed\n")
    still = kapistrano("apply", "-f", release, *ssh_args(app))
    assert still.returncode == 1, "a failed version was retried unasked"
    assert "HostFailed" in still.stdout

    retried = kapistrano("apply", "-f", release, "--retry", *ssh_args(app))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    state = json.loads(release.with_name("release.app.kapistrano-state.json").read_text())
    assert (state["version"], state["ready"], state["retries"], state.get("failedVersion")) == ("v2", "2/2", 1, None)
    for host in app.lab.hosts:
        assert release_version(app, host.name, current_release(app, host.name)) == "v2"
