"""Real OpenSSH test hosts on this machine: one sshd per network + mount + UTS namespace.

Each host (machine.LabHost) has its own network namespace (a veth pair, ``eth0`` inside, one /30 per
host, default route via the root-namespace end), its own mount namespace (private directories
bind-mounted over /var/www and /run, plus any `private_dirs`) and its own hostname. Debian's
``/usr/sbin/sshd -D -e`` runs inside, so every host has the same deployTo (/var/www/<app>) and port.

Services listening on 0.0.0.0 in the root namespace are reachable from a host at ``host.gateway``
(any root-namespace address works: each host's default route leads into the root namespace, which
answers for all its local addresses, so no ip_forward is needed). Hosts cannot reach each other.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType

from . import keys, limits, network, procs, registry
from .machine import DEFAULT_PRIVATE, START_TIMEOUT, LabHost, wait_holders_ready, wait_until_accepting
from .network import LabError, Slot
from .sshd import SSHD, holder_script, sshd_config


@functools.cache
def require_lab_support() -> str | None:
    """Why the lab cannot run on this machine, or None when it can (runs one `unshare` probe, cached)."""
    if os.geteuid() != 0:
        return "test hosts need root (network and mount namespaces)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing (apt-get install openssh-server)"
    for tool in ("ip", "nsenter", "unshare", "mount", "ssh"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2, util-linux, mount, openssh-client)"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "--uts", "true"], capture_output=True, text=True, check=False, timeout=30
    )
    if probe.returncode != 0:
        return f"cannot create namespaces: {probe.stderr.strip()}"
    return None


def reap_stale_labs() -> list[str]:
    """Clean up labs whose owner process died without closing them; returns their prefixes (side effects)."""
    with network.allocation_lock():
        return registry.reap_stale()


def _private_map(extra: Sequence[str]) -> dict[str, str]:
    """Private host directories -> directory names under a host's root (pure); validates `extra`."""
    private = dict(DEFAULT_PRIVATE)
    for directory in extra:
        posix = PurePosixPath(directory)
        if not posix.is_absolute() or posix == PurePosixPath("/") or ".." in posix.parts:
            raise ValueError(f"private directory must be an absolute path below /: {directory}")
        private[str(posix)] = "private" + str(posix).replace("/", "_")
    return private


def _default_workdir(private: Sequence[str]) -> Path:
    """A fresh, not yet created lab directory outside every private directory (pure apart from randomness)."""
    base = Path(tempfile.gettempdir())
    if any(base.is_relative_to(p) for p in private):
        base = Path("/var/tmp")  # noqa: S108 - the lab dir is created fresh (exist_ok=False), mode 0700
    return base / f"kapistrano-lab-{secrets.token_hex(4)}"


class HostLab:
    """N real SSH hosts, reachable from the root namespace with `client_key`, verified by `known_hosts`.

    Use as a context manager, or call start() and close(). close() also runs at interpreter exit, and
    labs left behind by a killed process are reaped by the next lab started on the machine.
    `workdir` must stay visible inside the hosts (sshd reads its files there), so it may not lie under
    a private directory; by default it is a fresh directory that close() deletes.
    """

    def __init__(
        self,
        count: int,
        *,
        prefix: str | None = None,
        workdir: Path | None = None,
        names: Sequence[str] | None = None,
        port: int = 22,
        private_dirs: Sequence[str] = (),
    ) -> None:
        if count < 1:
            raise ValueError("a lab needs at least one host")
        if names is not None and (len(names) != count or len(set(names)) != count):
            raise ValueError("names must hold one distinct name per host")
        self.count = count
        self.names = list(names) if names is not None else [f"host{i + 1}" for i in range(count)]
        self.prefix = prefix
        self.port = port
        self.private = _private_map(private_dirs)
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir).absolute() if workdir is not None else _default_workdir(list(self.private))
        if any(self.workdir.is_relative_to(p) for p in [*self.private, "/var/run"]):
            raise ValueError(f"workdir {self.workdir} would be hidden inside the hosts by a private directory")
        self.client_key = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.hosts: list[LabHost] = []
        #: Seconds each step of start() took (allocate, files, holders, sshd), and the limits it raised.
        self.timings: dict[str, float] = {}
        self.raised_limits: dict[str, int] = {}
        self._owner = os.getpid()
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> HostLab:
        """Create every host in parallel and wait until each sshd accepts (side effects); cleans up on failure."""
        if self._started:
            raise LabError("lab already started")
        self._started = True
        reason = require_lab_support()
        if reason is not None:
            raise LabError(reason)
        atexit.register(self._close_at_exit)
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, deadline: float) -> None:
        """The steps of start() (side effects)."""
        mark = time.monotonic()

        def step(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            self.timings[name] = now - mark
            mark = now

        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=not self._owns_workdir)
        client = keys.write_keypair(self.client_key, "kapistrano-lab-client")
        self.authorized_keys.write_text(client.public + "\n")
        self._allocate()
        step("allocate")
        self._write_host_files()
        step("files")
        for host in self.hosts:
            binds = {target: host.root / local for target, local in host.private.items()}
            host.spawn_holder(holder_script(binds, host.root / "net.batch", host.name))
        wait_holders_ready(self.hosts, deadline)
        step("holders")
        for host in self.hosts:
            host.spawn_sshd()
        wait_until_accepting(self.hosts, deadline)
        step("sshd")

    def _allocate(self) -> None:
        """Pick a prefix and free /30s, record them, create namespaces and veths (side effects, under the lock)."""
        block = network.lab_block()
        with network.allocation_lock():
            registry.reap_stale()
            running = sum(len(record.namespaces) for record in registry.load_all())
            self.raised_limits = limits.raise_limits(running + self.count)
            self.prefix = network.choose_prefix(network.taken_names(), self.prefix, self.count)
            used = network.used_networks(network.root_addresses(), block)
            slots = network.free_slots(block, used, self.count)
            self.hosts = [self._new_host(i, slot) for i, slot in enumerate(slots)]
            registry.save(self._record())
            batch = [line for h in self.hosts for line in network.create_links_batch(h.netns, h.link, h.slot)]
            network.run_ip([], batch=batch)

    def _new_host(self, index: int, slot: Slot) -> LabHost:
        """The LabHost for host `index` on `slot`, not yet running (pure)."""
        assert self.prefix is not None
        return LabHost(
            name=self.names[index],
            address=slot.address,
            gateway=slot.gateway,
            netns=network.netns_name(self.prefix, index),
            link=network.link_name(self.prefix, index),
            root=self.workdir / "hosts" / self.names[index],
            slot=slot,
            port=self.port,
            private=dict(self.private),
        )

    def _record(self) -> registry.LabRecord:
        """This lab's registry record (reads /proc for our start time)."""
        assert self.prefix is not None
        return registry.LabRecord(
            prefix=self.prefix,
            owner_pid=self._owner,
            owner_start=procs.start_time(self._owner),
            namespaces=[h.netns for h in self.hosts],
            links=[h.link for h in self.hosts],
            workdir=str(self.workdir),
            owns_workdir=self._owns_workdir,
        )

    def _write_host_files(self) -> None:
        """Write private dirs, host keys, sshd configs, network batches and known_hosts (side effects: files)."""
        lines = []
        for host in self.hosts:
            for local in host.private.values():
                (host.root / local).mkdir(parents=True, exist_ok=True)
            host_key = keys.write_keypair(host.root / "ssh_host_ed25519_key", f"root@{host.name}")
            host.config.write_text(sshd_config(host.address, host.port, host_key.private, self.authorized_keys))
            (host.root / "net.batch").write_text("\n".join(network.inside_batch(host.slot)) + "\n")
            lines.append(keys.known_hosts_line(host.address, host.port, host_key.public))
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        """Kill every process inside the hosts, delete veths, namespaces and the workdir (side effects; idempotent).

        Raises LabError at the end if something could not be removed; every step runs regardless.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        errors: list[str] = []
        holders = [h.holder_pid for h in self.hosts if h.holder_pid is not None]
        with procs.held_namespaces(holders):
            survivors = procs.kill_all(set().union(*(h.namespace_ids for h in self.hosts)))
        if survivors:
            errors.append(f"processes survived SIGKILL: {survivors}")
        for host in self.hosts:
            host.reap()
        try:
            network.delete_links([h.link for h in self.hosts], [h.netns for h in self.hosts])
        except LabError as error:
            errors.append(str(error))
        if self.prefix is not None and self.hosts:
            registry.remove(self.prefix)
        self._remove_workdir()
        if errors:
            raise LabError("lab cleanup incomplete: " + "; ".join(errors))

    def _close_at_exit(self) -> None:
        """close() at interpreter exit, in the process that started the lab only (side effects)."""
        if os.getpid() == self._owner:
            self.close()

    def _remove_workdir(self) -> None:
        """Delete the workdir if the lab created it, else only what the lab put there (side effects)."""
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        shutil.rmtree(self.workdir / "hosts", ignore_errors=True)
        for path in (self.client_key, Path(f"{self.client_key}.pub"), self.known_hosts, self.authorized_keys):
            path.unlink(missing_ok=True)

    def __enter__(self) -> HostLab:
        return self if self._started else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- helpers for tests and the demo ------------------------------------------------------------

    def gateway_for(self, host: LabHost) -> str:
        """The root-namespace address `host` reaches root services on (pure)."""
        return host.gateway

    @property
    def service_address(self) -> str:
        """One root-namespace address every host can reach (the first host's gateway) (pure)."""
        if not self.hosts:
            raise LabError("lab not started")
        return self.hosts[0].gateway

    def host(self, name: str) -> LabHost:
        """The host called `name` (pure); raises KeyError."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def route_between_hosts(self) -> None:
        """Let the hosts reach each other through the root namespace, e.g. for a jump host (side effect: sysctls)."""
        network.forward_between(h.link for h in self.hosts)

    def release_yaml_hosts(self) -> list[dict[str, str | int]]:
        """The hosts as Release spec.hosts entries (pure)."""
        return [{"name": h.name, "address": h.address, "port": h.port, "user": "root"} for h in self.hosts]

    def ssh_options(self) -> list[str]:
        """OpenSSH client options: the lab's key, strict checking against its known_hosts, no prompts (pure)."""
        options = {
            "IdentityFile": str(self.client_key),
            "IdentitiesOnly": "yes",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "BatchMode": "yes",
            "LogLevel": "ERROR",
        }
        return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]

    def ssh_argv(self, host: LabHost, *command: str) -> list[str]:
        """An OpenSSH client command line that runs `command` on `host` as root (pure)."""
        return ["ssh", *self.ssh_options(), "-p", str(host.port), f"root@{host.address}", *command]
