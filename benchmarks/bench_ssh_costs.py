#!/usr/bin/env python3
"""What an SSH connection and an sshd session cost the operator: memory per idle connection, CPU per session by cipher.

Opens one kapistrano SshConnection to each of N lab hosts (each runs one command, then idles) and
prints the RSS they added; then runs S trivial sessions (a 3 KB command line, as kapistrano's scripts
are) over one asyncssh connection per cipher, 8 at a time, and prints the process CPU per session.

    python -m benchmarks.bench_ssh_costs [--hosts 300] [--sessions 300]      (as root)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from pathlib import Path

import asyncssh
from kapistrano.hosts.ssh import SshConnection, SshTarget
from kapistrano.lab import HostLab, LabHost

CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr")
#: A command line about as long as kapistrano's remote scripts.
COMMAND = "sh -c '" + "x" * 3000 + "' >/dev/null 2>&1; true"


def rss_mib() -> float:
    """This process's resident memory in MiB (reads /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (reads rusage)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def target(lab: HostLab, host: LabHost) -> SshTarget:
    """The SshTarget of a lab host with the lab's key and known_hosts (pure)."""
    return SshTarget(
        name=host.name, address=host.address, port=host.port, user="root",
        client_key=lab.client_key.read_bytes(), known_hosts=lab.known_hosts.read_bytes(),
    )  # fmt: skip


async def connection_memory(lab: HostLab) -> tuple[int, float]:
    """(connections, MiB they added) once every host's connection ran a command and idles (network I/O)."""
    conns = [SshConnection(target(lab, h)) for h in lab.hosts]
    await conns[0].run("true")
    before = rss_mib()
    for start in range(1, len(conns), 20):
        await asyncio.gather(*(c.run("true") for c in conns[start : start + 20]))
    added = rss_mib() - before
    await asyncio.gather(*(c.close() for c in conns))
    return len(conns) - 1, added


async def session_cpu(lab: HostLab, cipher: str, sessions: int) -> float:
    """Milliseconds of this process's CPU per session over one connection using `cipher` (network I/O)."""
    host = lab.hosts[0]
    options = {"username": "root", "client_keys": [str(lab.client_key)], "known_hosts": str(lab.known_hosts)}
    async with asyncssh.connect(host.address, port=host.port, encryption_algs=[cipher], **options) as conn:
        await conn.run("true")
        gate = asyncio.Semaphore(8)

        async def one() -> None:
            async with gate:
                await conn.run(COMMAND)

        started = cpu_seconds()
        await asyncio.gather(*(one() for _ in range(sessions)))
        return 1000 * (cpu_seconds() - started) / sessions


async def measure(lab: HostLab, sessions: int) -> None:
    """Print both figures (network I/O)."""
    count, added = await connection_memory(lab)
    print(f"idle connections: {count} added {added:.1f} MiB RSS, {1024 * added / count:.0f} KiB each")
    print("\n| cipher | client CPU ms per session |\n|---|---:|")
    for cipher in CIPHERS:
        print(f"| {cipher} | {await session_cpu(lab, cipher, sessions):.2f} |")


def main() -> None:
    """Parse the options, start the lab, measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=300)
    args = parser.parse_args()
    with HostLab(args.hosts) as lab:
        asyncio.run(measure(lab, args.sessions))


if __name__ == "__main__":
    main()
