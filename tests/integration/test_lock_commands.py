"""`kapistrano lock status|acquire|release` on real SSH test hosts: a lock taken by hand keeps rollouts off."""

from __future__ import annotations

import getpass
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .appkit import App


@pytest.fixture
def app(two_host_app: App) -> App:
    """This module's tests run on two lab hosts."""
    return two_host_app


def kapistrano(app: App, *argv: str | Path, answer: str = "") -> subprocess.CompletedProcess[str]:
    """Run the kapistrano command as a user would, with the lab's key and known_hosts."""
    ssh = ["--ssh-key", str(app.lab.client_key), "--known-hosts", str(app.lab.known_hosts)]
    command = [sys.executable, "-m", "kapistrano.cli.main", *map(str, argv), *ssh]
    return subprocess.run(command, input=answer, capture_output=True, text=True, timeout=120, check=False)


def test_a_lock_taken_by_hand_shows_in_status_blocks_apply_with_its_message_until_released(app: App) -> None:
    release = app.write("v1")
    owner = f"manual:{getpass.getuser()}@{socket.gethostname()}"
    taken = kapistrano(app, "lock", "acquire", "-f", release, "--hosts", "host1", "--message", "db maintenance")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert f"host1: locked by {owner}" in taken.stdout

    status = kapistrano(app, "lock", "status", "-f", release)
    assert status.returncode == 0, status.stderr
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    line = rf"host1: locked by {re.escape(owner)} until released, since {stamp}: db maintenance"
    assert re.search(line, status.stdout), status.stdout
    assert "host2: not locked" in status.stdout

    blocked = kapistrano(app, "apply", "-f", release)
    assert blocked.returncode == 1, blocked.stdout
    assert "Conflict" in blocked.stdout
    assert "db maintenance" in blocked.stdout
    assert not app.lab.hosts[0].path("/var/www/app/current").exists(), "a rollout went past a manual lock"

    released = kapistrano(app, "lock", "release", "-f", release, "--hosts", "host1", "--yes")
    assert released.returncode == 0, released.stdout + released.stderr
    assert "removed 1 lock(s)" in released.stdout
    assert "host1: not locked" in kapistrano(app, "lock", "status", "-f", release).stdout

    applied = kapistrano(app, "apply", "-f", release)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "2/2 hosts ready" in applied.stdout
