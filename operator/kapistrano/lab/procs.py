"""Finding and killing the processes that live inside lab hosts, by namespace identity.

A namespace id is what /proc/<pid>/ns/<kind> links to, e.g. ``mnt:[4026532249]``. Every process a
host ever ran (sshd, its sessions, daemons started with setsid/nohup) shares the host's mount or
network namespace, so scanning /proc for those ids finds them all, whoever their parent is.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PROC = Path("/proc")
POLL_SECONDS = 0.005


def namespace_id(pid: int, kind: str) -> str | None:
    """The id of a process's namespace of `kind` ("mnt", "net", ...), None if gone (reads /proc)."""
    try:
        return os.readlink(PROC / str(pid) / "ns" / kind)
    except OSError:
        return None


def netns_id(path: Path) -> str | None:
    """The id of a named network namespace (its bind mount under /run/netns), None if gone (stat)."""
    try:
        return f"net:[{path.stat().st_ino}]"
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (tells reused pids apart), None if gone (reads /proc)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def cmdline(pid: int) -> str:
    """A process's command line joined by spaces, "" if gone or a kernel thread (reads /proc)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def all_pids() -> list[int]:
    """Every process id currently in /proc (reads /proc)."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def pids_in(ids: Collection[str], kinds: tuple[str, ...] = ("mnt", "net")) -> list[int]:
    """Live processes (not zombies) whose mount or network namespace is one of `ids` (reads /proc)."""
    me = os.getpid()
    found = []
    for pid in all_pids():
        if pid != me and any(namespace_id(pid, kind) in ids for kind in kinds):
            found.append(pid)
    return found


def pids_by_namespace(ids: Collection[str], kind: str = "mnt") -> dict[str, list[int]]:
    """Live processes per namespace id of `kind`, for the ids in `ids`, in one scan of /proc (reads /proc).

    pids_in() scans /proc once per call; at hundreds of hosts, one scan for all of them is what scales.
    """
    found: dict[str, list[int]] = {i: [] for i in ids}
    for pid in all_pids():
        ns = namespace_id(pid, kind)
        if ns in found and is_alive(pid):
            found[ns].append(pid)
    return found


@contextmanager
def held_namespaces(pids: Iterable[int], kinds: tuple[str, ...] = ("mnt", "net")) -> Iterator[None]:
    """Keep the namespaces of `pids` alive (open descriptors) for the duration (side effects: fds).

    A namespace whose last process died is freed and its id can be given to the next namespace
    created on the machine, another lab's: killing "everything in these ids" in a loop must not
    outlive the namespaces it means, or it kills that lab's processes.
    """
    fds = []
    try:
        for pid in pids:
            for kind in kinds:
                with suppress(OSError):
                    fds.append(os.open(PROC / str(pid) / "ns" / kind, os.O_RDONLY))
        yield
    finally:
        for fd in fds:
            os.close(fd)


def kill_all(ids: Collection[str], timeout: float = 10.0) -> list[int]:
    """SIGKILL every process in the namespaces `ids` until none is left; returns survivors (side effects)."""
    if not ids:
        return []
    deadline = time.monotonic() + timeout
    while True:
        pids = pids_in(ids)
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            kill(pid, signal.SIGKILL)
        time.sleep(POLL_SECONDS)


def kill(pid: int, sig: int) -> bool:
    """Send `sig` to `pid`; False when it no longer exists (side effect)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (reads /proc)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def matching(pids: Collection[int], pattern: str) -> list[int]:
    """The pids among `pids` whose command line matches the regular expression `pattern` (reads /proc)."""
    regex = re.compile(pattern)
    return [pid for pid in pids if regex.search(cmdline(pid))]
