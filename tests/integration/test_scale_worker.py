"""The scale benchmark's shell worker keeps its promise: ready after S, gone its host's drain after TERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from benchmarks import scale_measure as measure


def test_the_shell_worker_is_ready_after_s_and_exits_its_drain_after_term(tmp_path: Path) -> None:
    (tmp_path / "tmp" / "pids").mkdir(parents=True)
    (tmp_path / "worker.sh").write_text(measure.WORKER_SH)
    (tmp_path / "VERSION").write_text("v7\n")
    (tmp_path / "drains.txt").write_text(f"other 9\n{socket.gethostname()} 0.6\n")
    events = tmp_path / "events.log"
    env = {"PATH": "/usr/bin:/bin", "READY_SECONDS": "0.3", "EVENTS_LOG": str(events)}
    worker = subprocess.Popen(["sh", "worker.sh"], cwd=tmp_path, env=env)
    ready_file = tmp_path / "tmp" / "pids" / f"ready.{worker.pid}"
    try:
        deadline = time.monotonic() + 30
        while not ready_file.exists():
            assert time.monotonic() < deadline, "the worker never became ready"
            time.sleep(0.01)
        termed = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert time.monotonic() - termed >= 0.6
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert not ready_file.exists()
    log = measure.read_events(events)
    assert [(e.version, e.event, e.pid) for e in log] == [("v7", step, worker.pid) for step in
                                                          ("start", "ready", "draining", "exit")]  # fmt: skip
    assert log[1].time - log[0].time >= 0.3
    assert log[3].time - log[2].time >= 0.6
