"""Hook output: streamed live by `kapistrano apply`, kept on the host, its tail in a failed host's message."""

from __future__ import annotations

import errno
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .appkit import App
from .test_cli import kapistrano, ssh_args


@pytest.fixture
def app(two_host_app: App) -> App:
    """This module's tests run on two lab hosts."""
    return two_host_app


SHARED = "/var/www/app/shared"
#: A key-like run of base64 that must never reach a status message.
SECRET = "A" * 64


def start_apply(release: Path, app: App) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """`kapistrano apply` in the background; its stdout lines arrive on the queue as they are printed."""
    command = [sys.executable, "-m", "kapistrano.cli.main", "apply", "-f", str(release), *map(str, ssh_args(app))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, pump_lines(process)


def pump_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """A queue that receives the process's stdout lines as they are printed (starts a reader thread)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_lines(lines: queue.Queue[str], wanted: set[str], timeout: float = 60.0) -> list[str]:
    """Read lines until every wanted line was seen; fails past the deadline."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not wanted <= set(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"never printed {wanted - set(seen)}; got {seen}"
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            continue
    return seen


def release_fifo(path: Path, timeout: float = 30.0) -> None:
    """Write a line into a fifo once the hook has it open for reading; fails past the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:  # ENXIO: no reader yet
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    with os.fdopen(fd, "w") as out:
        out.write("go\n")


def test_hook_output_streams_during_apply_and_stays_on_the_host(app: App) -> None:
    for host in app.lab.hosts:
        fifo = host.path(f"{SHARED}/go")
        fifo.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(fifo)
    run = f"echo waiting on $(hostname); read word < {SHARED}/go; echo got $word >&2"
    release = app.write("v1", hooks={"afterUpdate": [{"name": "gate", "run": run}]})
    process, lines = start_apply(release, app)
    try:
        # Each hook blocks until its fifo is written: lines seen now were streamed while it ran.
        waiting = {f"{h.name} gate| waiting on {h.name}" for h in app.lab.hosts}
        wait_for_lines(lines, waiting)
        for host in app.lab.hosts:
            release_fifo(host.path(f"{SHARED}/go"))
        wait_for_lines(lines, {f"{h.name} gate| got go" for h in app.lab.hosts})
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for host in app.lab.hosts:
        logs = list(host.path(f"{SHARED}/log/hooks").glob("*-gate.log"))
        assert len(logs) == 1, logs
        assert logs[0].read_text() == f"waiting on {host.name}\ngot go\n"


def test_a_failed_hook_puts_its_last_lines_redacted_in_the_host_message(app: App) -> None:
    run = f"for n in $(seq 1 30); do echo line $n; done; echo token {SECRET}; echo broken >&2; exit 7"
    assert kapistrano("apply", "-f", app.write("v1"), *ssh_args(app)).returncode == 0
    release = app.write("v2", hooks={"afterUpdate": [{"name": "build", "run": run}]})
    result = kapistrano("apply", "-f", release, *ssh_args(app))
    assert result.returncode == 1, result.stdout
    state = json.loads(release.with_name("release.app.kapistrano-state.json").read_text())
    for host in state["hosts"]:
        message = host["message"]
        assert "hook build exited with status 7" in message, message
        assert "line 30\ntoken [redacted]\nbroken" in message, message
        assert "line 1\n" not in message, "more than the last lines"
        assert SECRET not in message
    kept = next(app.lab.hosts[0].path(f"{SHARED}/log/hooks").glob("*-build.log")).read_text()
    assert kept.startswith("line 1\nline 2\n")
    assert kept.endswith(f"token {SECRET}\nbroken\n")
