"""`kapistrano logs`: a service's log tailed on every host, each line prefixed by its host."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest

from .appkit import App
from .test_cli import kapistrano, ssh_args
from .test_hook_output import pump_lines, wait_for_lines


@pytest.fixture
def app(two_host_app: App) -> App:
    """This module's tests run on two lab hosts."""
    return two_host_app


#: A log name no other test uses: the remote `tail` processes are found by it.
SERVICE = f"worker-{uuid.uuid4().hex[:8]}"
LOG = f"/var/www/app/shared/log/{SERVICE}.log"


def write_logs(app: App, text: str) -> None:
    """Append a line naming its host to the log of every lab host (writes host files)."""
    for host in app.lab.hosts:
        path = host.path(LOG)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(f"{text} on {host.name}\n")


def test_logs_follow_shows_new_lines_from_every_host(app: App) -> None:
    write_logs(app, "old")
    write_logs(app, "before start")
    argv = ["logs", SERVICE, "-f", str(app.write("v1")), "--follow", "-n", "1", *map(str, ssh_args(app))]
    process = subprocess.Popen(
        [sys.executable, "-m", "kapistrano.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = pump_lines(process)
        first = wait_for_lines(lines, {f"{h.name} | before start on {h.name}" for h in app.lab.hosts})
        assert not any(line.startswith("old") or "| old" in line for line in first), first
        write_logs(app, "new")
        wait_for_lines(lines, {f"{h.name} | new on {h.name}" for h in app.lab.hosts})
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 30
    while tails_of(app):  # the remote tails were sent TERM: they end on their own
        assert time.monotonic() < deadline, "a remote tail is left running"
        time.sleep(0.05)


def tails_of(app: App) -> str:
    """Pids of `tail` processes reading this test's log (hosts share the machine's pid namespace)."""
    found = app.lab.hosts[0].exec(["pgrep", "-f", f"tail .*{SERVICE}"], check=False)
    return found.stdout.strip()


def test_logs_of_chosen_hosts_without_follow(app: App) -> None:
    write_logs(app, "only")
    chosen = app.lab.hosts[1].name
    result = kapistrano("logs", SERVICE, "-f", app.write("v1"), "--hosts", chosen, *ssh_args(app))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{chosen} | only on {chosen}\n"
