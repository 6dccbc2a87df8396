"""What runs inside a lab host: the namespace holder's script and sshd's configuration (pure text)."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

SSHD = "/usr/sbin/sshd"
READY_LINE = "ready"
#: sshd >= 9.8 penalises sources that fail often; every lab connection comes from one gateway address.
PENALTIES_SINCE = (9, 8)


@functools.cache
def sshd_version() -> tuple[int, int]:
    """OpenSSH version of SSHD as (major, minor), (0, 0) if unknown (runs `sshd -V` once per process)."""
    try:
        proc = subprocess.run([SSHD, "-V"], capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return (0, 0)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", proc.stderr + proc.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def sshd_config(address: str, port: int, host_key: Path, authorized_keys: Path) -> str:
    """sshd_config for one lab host: root by key only, forwarding on, quiet, generous limits (pure)."""
    lines = [
        f"ListenAddress {address}",
        f"Port {port}",
        f"HostKey {host_key}",
        "PidFile /run/sshd.pid",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding yes",
        "MaxSessions 64",
        "MaxStartups 100",
        "LogLevel ERROR",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "Subsystem sftp internal-sftp",
    ]
    if sshd_version() >= PENALTIES_SINCE:
        lines.append("PerSourcePenalties no")
    return "\n".join(lines) + "\n"


def holder_script(binds: Mapping[str, Path], net_batch: Path, hostname: str) -> str:
    """Shell script of a host's namespace holder (pure).

    It runs in the host's fresh network, mount and UTS namespaces: configures the network, detaches
    the copies of /run/netns mounts (they would keep other labs' namespaces alive), mounts a sysfs
    that shows the host's own interfaces, bind-mounts each private directory (`binds`: host path ->
    directory on the root filesystem, parents first), sets the hostname, reports readiness on stdout
    and then sleeps forever, keeping the namespaces alive for sshd and everything started inside.
    """
    q = shlex.quote
    lines = [
        "set -e",
        f"ip -batch {q(str(net_batch))}",
        "umount -l /run/netns 2>/dev/null || true",
        "if umount -l /sys 2>/dev/null; then mount -n -t sysfs sysfs /sys; fi",
    ]
    for target in sorted(binds, key=lambda path: (path.count("/"), path)):
        lines.append(f"mkdir -p {q(target)} && mount -n --bind {q(str(binds[target]))} {q(target)}")
    lines += [
        "mkdir -p /run/sshd && chmod 0755 /run/sshd",
        f"hostname {q(hostname)}",
        f"echo {READY_LINE}",
        "exec sleep infinity </dev/null >/dev/null 2>&1",
    ]
    return "\n".join(lines)
