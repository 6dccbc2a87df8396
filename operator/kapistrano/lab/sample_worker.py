#!/usr/bin/env python3
"""A queue-style sample worker for the demo and the tests (standard library only).

It boots for READY_SECONDS, then answers GET /health on 127.0.0.1:HEALTH_PORT+instance with 200; on
TERM it stops answering, "drains" its current job for DRAIN_SECONDS and exits. Every start and exit
is appended as a JSON line to EVENTS_LOG (when set), so tests can check that the new process started
only after the old one exited. Settings come from the environment, with the release's VERSION file.
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
PORT = int(os.environ.get("HEALTH_PORT", "9100")) + INSTANCE
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


def main() -> int:
    """Serve health, work until TERM, drain, exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Health)
    # A short poll interval makes shutdown() return at once instead of within half a second.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    record("start")
    if not stop.wait(BOOT):
        Health.ready.set()
        record("ready")
    stop.wait()
    Health.ready.clear()
    server.shutdown()
    server.server_close()
    record("draining")
    time.sleep(DRAIN)  # the job in progress: this is the slow exit the rollout must wait for
    record("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
