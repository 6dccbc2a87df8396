"""A queue-worker stand-in for the service tests: a busy worker that needs time to exit.

On TERM it "finishes its current job" for --drain seconds, then exits. With --quiet-work, TSTP makes
it stop taking work and finish its job in progress for that long (then it logs `drained`); a TERM
that arrives before that loses the job (`lost`) and kills the worker at once, as sidekiq 6.4 does
when a second signal arrives while it still handles the first. Every step is appended to
--events as `<event> <pid> <unix time> <instance>`, so tests can order starts and exits across
processes. With --daemonize it double-forks and writes --pidfile itself (sidekiq -d style).
Standard library only: it runs with the host's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType

INSTANCE = os.environ.get("KAPISTRANO_INSTANCE", "-")


def record(path: str, event: str) -> None:
    """Append one event line with one write (side effect: the events file)."""
    line = f"{event} {os.getpid()} {time.time():.6f} {INSTANCE}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def daemonize() -> None:
    """Detach like a classic daemon: fork, setsid, fork; the launcher returns at once (side effect: forks)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)


def main() -> int:
    """Run until TERM, then drain and exit (side effects: events file, pid file)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", required=True)
    parser.add_argument("--drain", type=float, default=0.0)
    parser.add_argument("--pidfile")
    parser.add_argument("--daemonize", action="store_true")
    parser.add_argument("--exit-status", type=int, default=None, help="exit at once with this status")
    parser.add_argument("--quiet-work", type=float, default=None, help="seconds to finish the job after TSTP")
    args = parser.parse_args()
    if args.exit_status is not None:
        print("refusing to start", file=sys.stderr)
        return int(args.exit_status)
    if args.daemonize:
        daemonize()
    stopping = threading.Event()
    quieting = threading.Event()
    drained = threading.Event()

    def drain_in_progress() -> None:
        time.sleep(args.quiet_work)  # the job in progress after a quiet signal
        drained.set()
        record(args.events, "drained")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        record(args.events, name.lower())
        if signum == signal.SIGTSTP and args.quiet_work is not None and not quieting.is_set():
            quieting.set()
            threading.Thread(target=drain_in_progress, daemon=True).start()
        if signum == signal.SIGTERM:
            if quieting.is_set() and not drained.is_set():
                record(args.events, "lost")
                os._exit(1)
            stopping.set()

    for sig in (signal.SIGTERM, signal.SIGTSTP, signal.SIGUSR1):
        signal.signal(sig, on_signal)
    if args.pidfile:
        with open(args.pidfile, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    record(args.events, "start")
    stopping.wait()
    time.sleep(args.drain)  # the job in progress: this is the slow exit under test
    record(args.events, "exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
