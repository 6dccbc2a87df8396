"""The sample worker keeps the timings it claims, so benchmarks against N*(D+S) measure kapistrano."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kapistrano.lab import sample_worker

from ..workloads.servers import free_port, wait_until

BOOT, DRAIN = 0.4, 0.5


def test_ready_no_sooner_than_boot_after_creation_and_gone_no_sooner_than_drain_after_term(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = os.environ | {"READY_SECONDS": str(BOOT), "DRAIN_SECONDS": str(DRAIN), "EVENTS_LOG": str(events)}
    env["HEALTH_PORT"] = str(free_port())
    before_spawn = time.time()
    proc = subprocess.Popen([sys.executable, sample_worker.__file__], cwd=tmp_path, env=env)
    try:

        def ready() -> float | None:
            lines = events.read_text().splitlines() if events.exists() else []
            return next((json.loads(x)["time"] for x in lines if json.loads(x)["event"] == "ready"), None)

        ready_at = wait_until(ready, "the worker's ready event", timeout=10)
        terminated = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        gone = time.monotonic() - terminated
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Never sooner than claimed (the floor would be beaten); not much later either (it would be paid twice).
    assert BOOT <= ready_at - before_spawn < BOOT + 1.0
    assert DRAIN <= gone < DRAIN + 1.0
