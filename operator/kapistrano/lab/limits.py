"""Kernel and process limits a large lab needs, raised (never lowered) before its hosts are created.

Neighbour (ARP) table: every lab host puts two entries in the kernel's IPv4 neighbour table, one in
the root namespace for the host's address and one inside the host for its gateway, and that table is
shared by every network namespace of the machine. Past ``gc_thresh3`` (1024 on a stock kernel) new
entries are refused ("neighbour table overflow") and hosts stop answering: at about 500 lab hosts,
fewer when other labs run beside. Before a lab starts, ``gc_thresh2`` (the level above which the
kernel collects entries) is raised to twice the hosts of every running lab plus headroom and
``gc_thresh3`` (the hard limit) to twice that, when they are lower: on a stock kernel labs of up to
128 hosts in all change nothing. They stay raised after the lab closes: lowering them while another
lab (or a real workload) runs could overflow its table, while higher thresholds only let the kernel
keep more entries (a few hundred bytes each). ``gc_thresh1`` is left alone.

Open files: the process that starts a lab holds one pipe per host while the hosts come up, and an
operator it starts afterwards holds one SSH connection per host; the soft RLIMIT_NOFILE of the
process (inherited by its children) is raised toward the hard limit to fit.

Nothing else needed raising at 500 hosts (checked: pid_max 32768 against about 8 processes per host
during a rollout, user.max_net_namespaces and max_mnt_namespaces ~96k, fs.mount-max 100000 per
mount namespace, no inotify use).
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from pathlib import Path

from kapistrano.hosts.hub import soft_files_limit

NEIGH_DIR = Path("/proc/sys/net/ipv4/neigh/default")
#: Neighbour entries per lab host: the root side's entry for the host, the host's for its gateway.
ENTRIES_PER_HOST = 2
#: Room left for the machine's own neighbours and for labs that start meanwhile.
NEIGH_HEADROOM = 256
#: Open files the lab's process (and an operator it starts) may need per host, and beyond.
FILES_PER_HOST = 8
FILES_BASE = 1024


def neighbour_thresholds(lab_hosts: int, current: Mapping[str, int]) -> dict[str, int]:
    """The gc_thresh2/3 values to write so that `lab_hosts` hosts fit, only those above `current` (pure)."""
    soft = ENTRIES_PER_HOST * lab_hosts + NEIGH_HEADROOM
    wanted = {"gc_thresh2": soft, "gc_thresh3": 2 * soft}
    return {name: value for name, value in wanted.items() if value > current.get(name, 0)}


def open_files_limit(lab_hosts: int, soft: int, hard: int) -> int | None:
    """The soft RLIMIT_NOFILE to set for `lab_hosts` hosts, None when `soft` is enough (pure)."""
    return soft_files_limit(FILES_PER_HOST * lab_hosts + FILES_BASE, soft, hard)


def read_thresholds(directory: Path = NEIGH_DIR) -> dict[str, int]:
    """The current gc_thresh1..3 (reads /proc/sys)."""
    return {f"gc_thresh{i}": int((directory / f"gc_thresh{i}").read_text()) for i in (1, 2, 3)}


def raise_limits(lab_hosts: int, directory: Path = NEIGH_DIR) -> dict[str, int]:
    """Raise neighbour thresholds and the open-files limit for `lab_hosts` hosts; returns what changed (side effects).

    gc_thresh3 is written first so that gc_thresh2 never exceeds it.
    """
    changed = neighbour_thresholds(lab_hosts, read_thresholds(directory))
    for name in sorted(changed, reverse=True):
        (directory / name).write_text(f"{changed[name]}\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = open_files_limit(lab_hosts, soft, hard)
    if files is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, hard))
        changed["RLIMIT_NOFILE"] = files
    return changed
