"""A record of every running lab, so that labs left behind by a killed process get cleaned up.

close() and the atexit handler clean up normally; a SIGKILLed test run cannot. Each lab writes a
small JSON record (owner pid and start time, namespaces, interfaces, workdir) before creating
anything; the next lab started on the machine reaps the records whose owner is gone.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from . import network, procs

REGISTRY_DIR = Path("/run/kapistrano-lab")


@dataclass(frozen=True)
class LabRecord:
    """What a lab created on the machine, and which process owns it."""

    prefix: str
    owner_pid: int
    owner_start: int | None
    namespaces: list[str]
    links: list[str]
    workdir: str
    owns_workdir: bool

    @property
    def path(self) -> Path:
        """Where this record is stored (pure)."""
        return REGISTRY_DIR / f"{self.prefix}.json"

    def owner_alive(self) -> bool:
        """True while the process that created the lab runs (reads /proc)."""
        return procs.is_alive(self.owner_pid) and procs.start_time(self.owner_pid) == self.owner_start


def save(record: LabRecord) -> None:
    """Write the record (side effect: a file in REGISTRY_DIR)."""
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    tmp = record.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(record.path)


def remove(prefix: str) -> None:
    """Delete a lab's record if present (side effect)."""
    (REGISTRY_DIR / f"{prefix}.json").unlink(missing_ok=True)


def load_all() -> list[LabRecord]:
    """Every readable record (reads REGISTRY_DIR); unreadable files are skipped."""
    records = []
    for path in sorted(REGISTRY_DIR.glob("*.json")):
        try:
            records.append(LabRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return records


def reap(record: LabRecord) -> None:
    """Kill a lab's processes, delete its namespaces, links and workdir, then its record (side effects)."""
    ids = {i for name in record.namespaces if (i := procs.netns_id(network.NETNS_DIR / name))}
    procs.kill_all(ids)
    network.delete_links(record.links, record.namespaces)
    if record.owns_workdir:
        shutil.rmtree(record.workdir, ignore_errors=True)
    remove(record.prefix)


def reap_stale() -> list[str]:
    """Reap every lab whose owner process is gone; returns their prefixes (side effects; call under the lock)."""
    reaped = []
    for record in load_all():
        if record.owner_pid != os.getpid() and not record.owner_alive():
            try:
                reap(record)
            except network.LabError:
                continue
            reaped.append(record.prefix)
    return reaped
