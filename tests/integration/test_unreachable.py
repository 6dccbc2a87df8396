"""Saying why the rollout waits: an unreachable host is named at once, and at the deadline with its budget."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

from kapistrano.engine.rollout import Result

from .appkit import App
from .safety import read_state

CONNECT_TIMEOUT = 2


class Output:
    """Every line a process writes, with the moment it arrived, read by a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        assert process.stdout is not None
        self._source = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._source:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def join(self) -> str:
        """All output once the process closed it, whitespace collapsed (blocks until EOF)."""
        self._thread.join(30)
        return " ".join(" ".join(line for _, line in self.lines).split())


def test_apply_names_an_unreachable_host_and_stops_at_the_deadline_with_the_reason(app: App) -> None:
    assert asyncio.run(app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    ssh = {"user": "root", "connectTimeoutSeconds": CONNECT_TIMEOUT}
    release = app.write("v2", ssh=ssh, progressDeadlineSeconds=10)
    host3 = app.lab.host("host3")
    host3.cut_link()
    try:
        argv = [sys.executable, "-m", "kapistrano.cli.main", "apply", "-f", str(release), "--state", str(app.state)]
        argv += ["--ssh-key", str(app.lab.client_key), "--known-hosts", str(app.lab.known_hosts)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
        started = time.monotonic()
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
            output = Output(process)
            status = process.wait(timeout=120)
    finally:
        host3.restore_link()
    text = output.join()
    named = [t for t, line in output.lines if line.startswith("host3") and "Unreachable" in line]
    assert named, f"apply never named host3: {text[-2000:]}"
    assert named[0] - started <= CONNECT_TIMEOUT + 5, f"host3 named only after {named[0] - started:.1f}s"
    assert status == 1, text[-2000:]
    assert "ProgressDeadlineExceeded" in text, text[-2000:]
    assert "host3 unreachable since" in text, text[-2000:]
    assert "it uses the budget of 1" in text, text[-2000:]
    message = read_state(app.state)["message"]
    assert message.startswith("no host progressed for 10s: host3 unreachable since"), message
    assert message.endswith("it uses the budget of 1"), message
