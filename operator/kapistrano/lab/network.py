"""Addresses, interface names and `ip` commands of the test-host lab.

Every host gets a /30 out of one block (10.213.0.0/16 unless KAPISTRANO_LAB_NET says otherwise): the
first usable address is its gateway (the root-namespace end of its veth pair), the second is the
host's own address. Allocation happens under a file lock and skips every /30 that already holds an
address in the root namespace, so concurrent labs (two test runs, a demo and a test run) never collide.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BLOCK_ENV = "KAPISTRANO_LAB_NET"
DEFAULT_BLOCK = "10.213.0.0/16"
SLOT_PREFIXLEN = 30
LOCK_PATH = Path("/run/lock/kapistrano-lab.lock")
NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
HOST_IFACE = "eth0"
IFNAMSIZ = 15
#: A locally administered unicast MAC that no interface owns: frames sent to it are dropped.
NOWHERE_MAC = "02:00:00:00:00:01"
_INET_RE = re.compile(r"\sinet\s+(\d+\.\d+\.\d+\.\d+)/")


class LabError(RuntimeError):
    """The lab could not be set up, driven or torn down."""


@dataclass(frozen=True)
class Slot:
    """One /30 of the lab block: network, gateway (root side) and host address (pure value)."""

    network: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        """The root-namespace end of the veth pair (pure)."""
        return str(self.network.network_address + 1)

    @property
    def address(self) -> str:
        """The host's own address (pure)."""
        return str(self.network.network_address + 2)


def lab_block() -> ipaddress.IPv4Network:
    """The address block labs carve their /30s from (reads the environment)."""
    block = ipaddress.IPv4Network(os.environ.get(BLOCK_ENV, DEFAULT_BLOCK), strict=True)
    if block.prefixlen > SLOT_PREFIXLEN:
        raise LabError(f"{BLOCK_ENV}={block} is smaller than one /{SLOT_PREFIXLEN}")
    return block


def used_networks(ip_addr_output: str, block: ipaddress.IPv4Network) -> set[ipaddress.IPv4Network]:
    """The /30s of `block` that hold an address in `ip -o -4 addr` output (pure)."""
    used: set[ipaddress.IPv4Network] = set()
    for match in _INET_RE.finditer(ip_addr_output):
        address = ipaddress.IPv4Address(match.group(1))
        if address in block:
            used.add(ipaddress.IPv4Network(f"{address}/{SLOT_PREFIXLEN}", strict=False))
    return used


def free_slots(block: ipaddress.IPv4Network, used: set[ipaddress.IPv4Network], count: int) -> list[Slot]:
    """The first `count` /30s of `block` not in `used` (pure); raises LabError when too few are left."""
    slots: list[Slot] = []
    for network in block.subnets(new_prefix=SLOT_PREFIXLEN):
        if network not in used:
            slots.append(Slot(network))
            if len(slots) == count:
                return slots
    raise LabError(f"only {len(slots)} free /{SLOT_PREFIXLEN} left in {block}, {count} needed")


def taken_names() -> set[str]:
    """Names of network namespaces and root-namespace interfaces that exist now (reads /run, /sys)."""
    names: set[str] = set()
    for directory in (NETNS_DIR, SYS_NET):
        try:
            names.update(os.listdir(directory))
        except FileNotFoundError:
            continue
    return names


def choose_prefix(taken: Iterable[str], requested: str | None, count: int) -> str:
    """A name prefix no existing namespace or interface starts with (pure); raises LabError when none."""
    width = len(str(max(count - 1, 0)))
    if requested is not None:
        candidates = [requested]
    else:
        base = f"kap{os.getpid() % 10000}"
        candidates = [base + letter for letter in "abcdefghijklmnopqrstuvwxyz"]
    taken = list(taken)
    for prefix in candidates:
        if len(prefix) + 1 + width > IFNAMSIZ:
            raise LabError(f"prefix {prefix!r} is too long for interface names (max {IFNAMSIZ} chars)")
        if not any(name.startswith(prefix) for name in taken):
            return prefix
    raise LabError(f"every candidate name prefix is in use: {candidates[0]}..{candidates[-1]}")


def netns_name(prefix: str, index: int) -> str:
    """Name of the network namespace of host `index` (pure)."""
    return f"{prefix}n{index}"


def link_name(prefix: str, index: int) -> str:
    """Name of the root-namespace end of host `index`'s veth pair (pure)."""
    return f"{prefix}r{index}"


@contextmanager
def allocation_lock(path: Path = LOCK_PATH) -> Iterator[None]:
    """Hold an exclusive lock shared by every lab on this machine (side effect: creates the lock file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run_ip(args: Sequence[str], *, batch: Sequence[str] | None = None, check: bool = True) -> str:
    """Run `ip ARGS` (with `-batch -` fed from `batch` when given) and return stdout (side effects)."""
    argv = ["ip", *args]
    if batch is not None:
        argv += ["-batch", "-"]
    stdin = "".join(line + "\n" for line in batch) if batch is not None else None
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=60)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def root_addresses() -> str:
    """`ip -o -4 addr` of the root namespace (runs ip)."""
    return run_ip(["-o", "-4", "addr", "show"])


def create_links_batch(netns: str, link: str, slot: Slot) -> list[str]:
    """`ip -batch` lines that create a host's namespace and veth pair, root side up (pure)."""
    return [
        f"netns add {netns}",
        f"link add {link} type veth peer name {HOST_IFACE} netns {netns}",
        f"addr add {slot.gateway}/{SLOT_PREFIXLEN} dev {link}",
        f"link set {link} up",
    ]


def inside_batch(slot: Slot) -> list[str]:
    """`ip -batch` lines run inside a host's namespace: lo, its address, default route (pure)."""
    return [
        "link set lo up",
        f"addr add {slot.address}/{SLOT_PREFIXLEN} dev {HOST_IFACE}",
        f"link set {HOST_IFACE} up",
        f"route add default via {slot.gateway}",
    ]


def forward_between(links: Iterable[str]) -> None:
    """Let the root namespace route packets between hosts on these links, and only those (side effect: sysctls).

    IPv4 forwarding is decided per receiving interface, so the machine's own ip_forward stays as it is;
    the setting goes away with the links.
    """
    for link in links:
        Path(f"/proc/sys/net/ipv4/conf/{link}/forwarding").write_text("1\n")


def delete_links(links: Iterable[str], namespaces: Iterable[str]) -> None:
    """Delete veth pairs and network namespaces that still exist (side effects); raises LabError if any stay."""
    existing = taken_names()
    lines = [f"link del {name}" for name in links if name in existing]
    lines += [f"netns del {name}" for name in namespaces if name in existing]
    if lines:
        run_ip(["-force"], batch=lines, check=False)
    left = sorted(taken_names() & {*links, *namespaces})
    if left:
        raise LabError(f"could not delete {', '.join(left)}")


def cut_batches(link: str, netns: str, slot: Slot) -> tuple[list[str], list[str]]:
    """`ip` lines (root side, host side) that send each side's packets to a MAC nobody has (pure)."""
    root = [f"neigh replace {slot.address} dev {link} lladdr {NOWHERE_MAC} nud permanent"]
    host = [f"neigh replace {slot.gateway} dev {HOST_IFACE} lladdr {NOWHERE_MAC} nud permanent"]
    return root, host


def restore_batches(link: str, slot: Slot) -> tuple[list[str], list[str]]:
    """`ip` lines (root side, host side) that drop the bogus neighbour entries again (pure)."""
    return [f"neigh del {slot.address} dev {link}"], [f"neigh del {slot.gateway} dev {HOST_IFACE}"]
