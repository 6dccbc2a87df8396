"""The kapistrano command against real SSH test hosts: plan, apply, status and the demo."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kapistrano.lab import require_lab_support
from kapistrano.lab.registry import REGISTRY_DIR, load_all

from .appkit import App


@pytest.fixture
def app(two_host_app: App) -> App:
    """This module's tests run on two lab hosts."""
    return two_host_app


def kapistrano(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the kapistrano command as a user would."""
    command = [sys.executable, "-m", "kapistrano.cli.main", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def ssh_args(app: App) -> list[str | Path]:
    return ["--ssh-key", app.lab.client_key, "--known-hosts", app.lab.known_hosts]


def test_plan_apply_status_round_trip(app: App) -> None:
    release = app.write("v1")
    planned = kapistrano("plan", "-f", release, *ssh_args(app))
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.count("fetch v1") == 2, planned.stdout
    assert not (app.lab.hosts[0].path("/var/www/app/releases")).exists(), "plan changed a host"

    applied = kapistrano("apply", "-f", release, *ssh_args(app))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "2/2 hosts ready" in applied.stdout
    state = json.loads(release.with_name("release.app.kapistrano-state.json").read_text())
    assert state["ready"] == "2/2"
    assert {c["type"]: c["status"] for c in state["conditions"]}["Ready"] == "True"

    status = kapistrano("status", "-f", release, *ssh_args(app))
    assert status.returncode == 0, status.stdout
    assert "v1" in status.stdout
    again = kapistrano("plan", "-f", release, *ssh_args(app))
    assert again.stdout.count("nothing: up to date") == 2, again.stdout
    assert "judged by worker: httpGet :9100/health [release " in again.stdout, again.stdout


def test_status_exits_non_zero_before_the_release_is_there(app: App) -> None:
    result = kapistrano("status", "-f", app.write("v1"), *ssh_args(app))
    assert result.returncode == 3, result.stdout


def test_apply_reports_a_failed_version_and_exits_non_zero(app: App) -> None:
    assert kapistrano("apply", "-f", app.write("v1"), *ssh_args(app)).returncode == 0
    bad = app.write("v2", healthy=False, readiness={"failureThreshold": 3})
    result = kapistrano("apply", "-f", bad, *ssh_args(app))
    assert result.returncode == 1, result.stdout
    assert "HostFailed" in result.stdout


def test_an_unknown_host_key_is_refused_by_apply(app: App, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = kapistrano("apply", "-f", app.write("v1"), "--ssh-key", app.lab.client_key, "--known-hosts", empty)
    assert result.returncode == 1
    assert "HostKeyMismatch" in result.stdout
    assert not app.lab.hosts[0].path("/var/www/app").exists(), "a command ran on a host with an unverified key"


@pytest.mark.hosts
def test_the_demo_rolls_a_release_and_cleans_up() -> None:
    reason = require_lab_support()
    if reason is not None:
        pytest.skip(reason)
    before = leftovers()
    result = kapistrano("demo", "--hosts", "2", "--drain", "0.5", "--boot", "0.2", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "v2 rolled across 2 hosts" in result.stdout
    assert "at most 1 host(s) had no live worker" in result.stdout, "the budget of 1 was not used or exceeded"
    left = {kind: found - before[kind] - others_now()[kind] for kind, found in leftovers().items()}
    assert left == {"netns": set(), "records": set(), "dirs": set()}, "the demo left these behind"


def others_now() -> dict[str, set[str]]:
    """What the labs of other live processes hold now: another test run's lab is none of the demo's (reads)."""
    live = [r for r in load_all() if r.owner_alive()]
    return {
        "netns": {n for r in live for n in r.namespaces},
        "records": {f"{r.prefix}.json" for r in live},
        "dirs": {Path(r.workdir).name for r in live},
    }


def leftovers() -> dict[str, set[str]]:
    """Network namespaces, lab records and demo/lab directories on the machine now (reads the system)."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    temp = Path(tempfile.gettempdir())
    return {
        "netns": {line.split()[0] for line in netns.splitlines() if line.strip()},
        "records": {p.name for p in REGISTRY_DIR.glob("*.json")},
        "dirs": {p.name for pattern in ("kapistrano-demo-*", "kapistrano-lab-*") for p in temp.glob(pattern)},
    }


def run_in_terminal(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdout and stderr; (exit status, all it wrote)."""
    leader, follower = pty.openpty()
    env = os.environ | {"TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        return proc.wait(10), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_apply_on_a_terminal_redraws_a_table_of_every_host(app: App) -> None:
    release = app.write("v1")
    argv = [sys.executable, "-m", "kapistrano.cli.main", "apply", "-f", str(release), *map(str, ssh_args(app))]
    status, output = run_in_terminal(argv)
    assert status == 0, output[-3000:]
    assert "\x1b[" in output, "no terminal control sequences: this was not the live view"
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    assert plain.count("PHASE") >= 3, "the table was not redrawn as the rollout went on"
    last = plain.rsplit("PHASE", 1)[1]
    for host in app.lab.hosts:
        assert re.search(rf"{host.name}\s*│\s*Ready\s*│\s*v1\s*│", last), last
    assert "2/2 hosts ready" in last
