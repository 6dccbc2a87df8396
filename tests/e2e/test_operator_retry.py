"""`kubectl kapistrano retry` with the operator: a failed version rolls out once its cause is fixed, same version."""

from __future__ import annotations

import pytest

from .test_operator import Scene, scene
from .test_operator_pause import plugin

__all__ = ["scene"]

pytestmark = pytest.mark.e2e
NEEDED = "/var/www/app/shared/needed.txt"


def test_retry_rolls_out_the_failed_version_after_the_fix_without_a_version_change(scene: Scene) -> None:
    scene.secret()
    scene.apply("v1")
    scene.wait_ready()
    scene.apply("v2", hooks={"afterUpdate": [{"name": "check", "run": f"test -f {NEEDED}"}]})
    failed = scene.wait_stalled("HostFailed")
    assert failed["status"]["failedVersion"] == "v2"
    assert "hook check exited with status 1" in failed["status"]["hosts"][0]["message"]
    generation = failed["metadata"]["generation"]

    for host in scene.lab.hosts:
        host.path(NEEDED).write_text("fixed\n")
    retried = plugin(scene, "retry", "app")
    assert retried.returncode == 0, retried.stderr
    ready = scene.wait_ready()
    status = ready["status"]
    assert (ready["metadata"]["generation"], status["version"], status.get("failedVersion")) == (generation, "v2", None)
    assert status["retries"] == 1
    assert status["retriedFor"] == ready["metadata"]["annotations"]["kapistrano.dev/retry"]
    assert status["currentVersion"] == "v2"
