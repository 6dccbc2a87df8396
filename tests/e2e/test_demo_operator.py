"""`kapistrano demo --operator --auto`: v1 then v2 to Ready through the operator, and nothing left behind."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kapistrano.lab import require_lab_support

pytestmark = [pytest.mark.e2e, pytest.mark.hosts]


def netns_names() -> set[str]:
    """The names of `ip netns list`."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_names() -> set[str]:
    """The names of the root namespace's network links."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (reads /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def pid_is_operator(pid: int) -> bool:
    """Whether `pid` is still a `kapistrano run` process (reads /proc)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kapistrano.cli.main" in cmdline and b"run" in cmdline


def accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_operator_demo_rolls_v1_then_v2_to_ready_and_leaves_nothing_behind() -> None:
    reason = require_lab_support()
    if reason is not None:
        pytest.skip(reason)
    namespaces_before = netns_names()
    links_before = link_names()
    command = [sys.executable, "-m", "kapistrano.cli.main", "demo", "--operator", "--auto"]
    command += ["--drain", "0.3", "--boot", "0.2", "--instances", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "v1 is Ready on every host" in out
    assert "v2 is Ready on every host" in out
    assert re.search(r"v2\s+Progressing\s+1/3", out), "progress lines from the status while v2 rolls"
    assert "kubectl patch release demo-workers -n demo --type merge" in out
    assert "kubectl kapistrano status demo-workers -n demo" in out

    operator_pid = int(re.search(r"operator: pid (\d+)", out).group(1))  # type: ignore[union-attr]
    port = int(re.search(r"API server: https://127\.0\.0\.1:(\d+)", out).group(1))  # type: ignore[union-attr]
    workdir = re.search(r"workdir: (\S+)", out).group(1)  # type: ignore[union-attr]
    started_netns = set(re.findall(r"\(netns (\S+)\)", out))
    assert len(started_netns) == 3, out

    leftover_netns = netns_names() - namespaces_before
    assert not started_netns & netns_names(), f"namespaces left: {started_netns & netns_names()}"
    assert not leftover_netns & started_netns
    links = {re.sub(r"n(\d+)$", r"r\1", name) for name in started_netns}
    assert len(links) == 3
    assert not links & link_names(), f"veths left: {links & link_names()}"
    assert not (link_names() - links_before) & links
    assert not pid_is_operator(operator_pid), "the operator is still running"
    assert processes_mentioning(workdir) == [], "processes of the demo's hosts are still running"
    assert not Path(workdir).exists()
    assert not accepts(port), "the API server still listens"
