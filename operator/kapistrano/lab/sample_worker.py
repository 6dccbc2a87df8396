#!/usr/bin/env python3
"""A queue-style sample worker for the demo and the tests (standard library only).

It boots for READY_SECONDS counted from the process's creation (interpreter start-up included),
then answers GET /health on 127.0.0.1:HEALTH_PORT+instance with 200; on TERM it stops answering,
"drains" its current job and exits DRAIN_SECONDS after the signal. Every start and exit is appended
as a JSON line to EVENTS_LOG (when set), so tests can check that the new process started only after
the old one exited. Settings come from the environment, with the release's VERSION file.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

INSTANCE = int(os.environ.get("KAPISTRANO_INSTANCE", "0"))
DRAIN = float(os.environ.get("DRAIN_SECONDS", "3"))
BOOT = float(os.environ.get("READY_SECONDS", "0.5"))
#: HEALTH_PORT=0 serves health on a free port of the kernel's choosing, so that a successor can run
#: beside its predecessor (replace StartFirst); probes then go by the events log.
PORT = int(os.environ.get("HEALTH_PORT", "9100")) + INSTANCE if os.environ.get("HEALTH_PORT") != "0" else 0
EVENTS = os.environ.get("EVENTS_LOG")
VERSION = Path("VERSION").read_text().strip() if Path("VERSION").exists() else "unknown"
HEALTHY = Path("HEALTHY").read_text().strip() != "no" if Path("HEALTHY").exists() else True


def record(event: str) -> None:
    """Append one event line to EVENTS_LOG (writes a file)."""
    if not EVENTS:
        return
    line = {"event": event, "pid": os.getpid(), "time": time.time(), "version": VERSION,
            "instance": INSTANCE, "host": socket.gethostname(), "cwd": os.getcwd()}  # fmt: skip
    with open(EVENTS, "a") as out:
        out.write(json.dumps(line) + "\n")


class Health(http.server.BaseHTTPRequestHandler):
    """GET /health: 200 once booted and while healthy, 503 otherwise."""

    ready = threading.Event()

    def do_GET(self) -> None:
        ok = self.ready.is_set() and HEALTHY
        body = f"{'ok' if ok else 'not ready'} {VERSION}\n".encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def seconds_since_start() -> float:
    """How long ago this process was created, so boot time includes the interpreter's own start-up."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # starttime, field 22 of proc(5), in clock ticks since boot
    except (OSError, IndexError, ValueError):
        return 0.0
    # starttime is rounded down to a tick: count from the end of that tick, so boot is never shorter.
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - (ticks + 1) / os.sysconf("SC_CLK_TCK"))


def main() -> int:
    """Serve health, work until TERM, drain, exit: ready BOOT s after start, gone DRAIN s after TERM."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Health)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    stop = threading.Event()
    termed: list[float] = []

    def on_signal(*_: object) -> None:
        termed.append(time.monotonic())
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    record("start")
    if not stop.wait(max(0.0, BOOT - seconds_since_start())):
        Health.ready.set()
        record("ready")
    stop.wait()
    Health.ready.clear()
    record("draining")
    server.shutdown()
    server.server_close()
    # The job in progress: this is the slow exit the rollout must wait for, DRAIN s from the signal.
    time.sleep(max(0.0, termed[0] + DRAIN - time.monotonic()))
    record("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
