"""Real OpenSSH test hosts on this machine: one sshd per network + mount + UTS namespace.

Each host is a long-lived *holder* process (``sleep infinity``) that owns the host's namespaces:
its own network namespace (a veth pair, ``eth0`` inside, a /30 per host, default route via the
root-namespace end), its own mount namespace (private directories bind-mounted over /var/www and
/run) and its own hostname. Debian's ``/usr/sbin/sshd -D -e`` is started into those namespaces with
nsenter, so it can be stopped and started again while /var/www keeps its content, exactly like a
service restart on a real machine. Every host has the same deployTo (/var/www/<app>) and port 22.

Services listening on 0.0.0.0 in the root namespace are reachable from a host at ``host.gateway``
(any root-namespace address works: each host's default route leads into the root namespace, which
answers for all its local addresses, so no ip_forward is needed). Hosts cannot reach each other.
"""

from __future__ import annotations

import atexit
import functools
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType

from . import keys, network, procs, registry
from .network import LabError, Slot
from .sshd import READY_LINE, SSHD, holder_script, sshd_config

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.005
LOG_TAIL_CHARS = 2000
#: Host paths that are private per host, and where they live inside the host's root directory.
PRIVATE_MOUNTS = {"/var/www": "www", "/run": "run", "/var/run": "run"}


class LabCommandError(subprocess.CalledProcessError):
    """A command run with LabHost.exec(check=True) failed; str() includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {str(self.stderr or '').strip()[-LOG_TAIL_CHARS:]}"


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


def _log_tail(path: Path) -> str:
    """The end of a log file, "" if missing (reads the file)."""
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip()
    except OSError:
        return ""


def _accepts(address: str, port: int) -> bool:
    """True when a TCP connection to address:port succeeds (side effect: opens and closes one)."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(eq=False)
class LabHost:
    """One test host. `root` is its private directory on the root filesystem (www/, run/, keys, logs)."""

    name: str
    address: str
    gateway: str
    netns: str
    link: str
    root: Path
    slot: Slot = field(repr=False)
    port: int = 22
    holder_pid: int | None = None
    _holder: subprocess.Popen[str] | None = field(default=None, repr=False)
    _sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _ns_ids: set[str] = field(default_factory=set, repr=False)
    _cut: bool = field(default=False, repr=False)

    @property
    def sshd_pid(self) -> int | None:
        """Pid of the running sshd listener, None while stopped (reaps it if it exited)."""
        if self._sshd is None or self._sshd.poll() is not None:
            return None
        return self._sshd.pid

    @property
    def config(self) -> Path:
        """The host's sshd_config (pure)."""
        return self.root / "sshd_config"

    @property
    def sshd_log(self) -> Path:
        """Where sshd's stderr goes (pure)."""
        return self.root / "sshd.log"

    @property
    def namespace_ids(self) -> frozenset[str]:
        """Ids of the host's mount and network namespaces, e.g. "mnt:[4026532249]" (pure)."""
        return frozenset(self._ns_ids)

    def enter_argv(self) -> list[str]:
        """nsenter prefix that runs a command inside the host's namespaces (pure)."""
        if self.holder_pid is None:
            raise LabError(f"{self.name}: not started")
        return ["nsenter", "-t", str(self.holder_pid), "-n", "-m", "-u", "--wd=/"]

    def exec(
        self,
        argv: Sequence[str] | str,
        *,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host (a str runs with `sh -c`); raises LabCommandError if check (side effects).

        Output is captured, so a daemon started in the background must redirect its stdout/stderr.
        """
        command = ["sh", "-c", argv] if isinstance(argv, str) else list(argv)
        proc = subprocess.run(
            self.enter_argv() + command,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise LabCommandError(proc.returncode, command, proc.stdout, proc.stderr)
        return proc

    def path(self, remote: str | PurePosixPath) -> Path:
        """Where an absolute host path lives on the root filesystem (pure); /var/www and /run are private."""
        posix = PurePosixPath(remote)
        if not posix.is_absolute():
            raise ValueError(f"host path must be absolute: {remote}")
        for mount, local in PRIVATE_MOUNTS.items():
            if posix.is_relative_to(mount):
                return self.root / local / posix.relative_to(mount)
        return Path(posix)

    def processes(self) -> list[int]:
        """Pids of live processes inside the host, the namespace holder excluded (reads /proc)."""
        return [pid for pid in procs.pids_in(self._ns_ids) if pid != self.holder_pid]

    def pids_of(self, pattern: str) -> list[int]:
        """Pids of processes inside the host whose command line matches the regex `pattern` (reads /proc)."""
        return procs.matching(self.processes(), pattern)

    def spawn_sshd(self) -> None:
        """Start sshd inside the host's namespaces without waiting for it (side effect: a process)."""
        with self.sshd_log.open("ab") as log:
            self._sshd = subprocess.Popen(
                [*self.enter_argv(), SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def accepting(self) -> bool:
        """True when sshd accepts TCP; raises LabError if sshd exited (side effect: one connection)."""
        if self.sshd_pid is None:
            raise LabError(f"{self.name}: sshd is not running: {_log_tail(self.sshd_log)}")
        return _accepts(self.address, self.port)

    def start_sshd(self, timeout: float = START_TIMEOUT) -> None:
        """Start a fresh sshd in the host's namespaces and wait until it accepts (side effects); no-op if running."""
        if self.sshd_pid is None:
            self.spawn_sshd()
        wait_until_accepting([self], time.monotonic() + timeout)

    def stop_sshd(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the sshd listener and wait for it to exit, SIGKILL past `timeout` (side effects).

        Established SSH sessions keep running, as they do when a real sshd is stopped.
        """
        sshd = self._sshd
        if sshd is None or sshd.poll() is not None:
            return
        sshd.terminate()
        try:
            sshd.wait(timeout)
        except subprocess.TimeoutExpired:
            sshd.kill()
            sshd.wait(timeout)

    def cut_link(self) -> None:
        """Silently drop every packet between the host and the root namespace (side effects).

        Both ends send to a MAC address nobody owns, so TCP stalls and connects time out as on a real
        network cut. (Taking the root-side veth down instead would make the root namespace route the
        host's /30 via its default gateway, which may answer.)
        """
        root, inside = network.cut_batches(self.link, self.netns, self.slot)
        network.run_ip([], batch=root)
        network.run_ip(["-n", self.netns], batch=inside)
        self._cut = True

    def restore_link(self) -> None:
        """Undo cut_link: neighbours are resolved again and stalled connections resume (side effects)."""
        root, inside = network.restore_batches(self.link, self.slot)
        network.run_ip(["-force"], batch=root, check=False)
        network.run_ip(["-n", self.netns, "-force"], batch=inside, check=False)
        self._cut = False

    @property
    def link_cut(self) -> bool:
        """True between cut_link() and restore_link() (pure)."""
        return self._cut


def wait_until_accepting(hosts: Sequence[LabHost], deadline: float) -> None:
    """Poll until every host's sshd accepts TCP; raises LabError past `deadline` (side effect: connections)."""
    pending = list(hosts)
    while True:
        pending = [host for host in pending if not host.accepting()]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{h.name} ({h.address}:{h.port})" for h in pending)
            raise LabError(f"sshd did not accept connections in time on {names}")
        time.sleep(POLL_SECONDS)


class HostLab:
    """N real SSH hosts, reachable from the root namespace with `client_key`, verified by `known_hosts`.

    Use as a context manager, or call start() and close(). close() also runs at interpreter exit, and
    labs left behind by a killed process are reaped by the next lab started on the machine.
    """

    def __init__(
        self,
        count: int,
        *,
        prefix: str | None = None,
        workdir: Path | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a lab needs at least one host")
        if names is not None and len(names) != count:
            raise ValueError("names must have one entry per host")
        self.count = count
        self.names = list(names) if names is not None else [f"host{i + 1}" for i in range(count)]
        self.prefix = prefix
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="kapistrano-lab-"))
        self.client_key = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.hosts: list[LabHost] = []
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
        atexit.register(self.close)
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, deadline: float) -> None:
        """The steps of start() (side effects)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        client = keys.write_keypair(self.client_key, "kapistrano-lab-client")
        self.authorized_keys.write_text(client.public + "\n")
        Path("/var/www").mkdir(parents=True, exist_ok=True)  # mount point; stays empty in the root namespace
        self._allocate()
        self._write_host_files()
        self._spawn_holders(deadline)
        for host in self.hosts:
            host.spawn_sshd()
        wait_until_accepting(self.hosts, deadline)

    def _allocate(self) -> None:
        """Pick a prefix and free /30s, record them, create namespaces and veths (side effects, under the lock)."""
        block = network.lab_block()
        with network.allocation_lock():
            registry.reap_stale()
            self.prefix = network.choose_prefix(network.taken_names(), self.prefix, self.count)
            used = network.used_networks(network.root_addresses(), block)
            slots = network.free_slots(block, used, self.count)
            self.hosts = [self._new_host(i, slot) for i, slot in enumerate(slots)]
            registry.save(self._record())
            lines = [
                line for host in self.hosts for line in network.create_links_batch(host.netns, host.link, host.slot)
            ]
            network.run_ip([], batch=lines)

    def _new_host(self, index: int, slot: Slot) -> LabHost:
        """The LabHost for host `index` on `slot`, not yet running (pure apart from naming)."""
        assert self.prefix is not None
        name = self.names[index]
        return LabHost(
            name=name,
            address=slot.address,
            gateway=slot.gateway,
            netns=network.netns_name(self.prefix, index),
            link=network.link_name(self.prefix, index),
            root=self.workdir / "hosts" / name,
            slot=slot,
        )

    def _record(self) -> registry.LabRecord:
        """This lab's registry record (reads /proc for our start time)."""
        assert self.prefix is not None
        return registry.LabRecord(
            prefix=self.prefix,
            owner_pid=os.getpid(),
            owner_start=procs.start_time(os.getpid()),
            namespaces=[h.netns for h in self.hosts],
            links=[h.link for h in self.hosts],
            workdir=str(self.workdir),
            owns_workdir=self._owns_workdir,
        )

    def _write_host_files(self) -> None:
        """Write host keys, sshd configs, network batches and known_hosts (side effects: files)."""
        lines = []
        for host in self.hosts:
            (host.root / "www").mkdir(parents=True)
            (host.root / "run").mkdir()
            host_key = keys.write_keypair(host.root / "ssh_host_ed25519_key", f"root@{host.name}")
            host.config.write_text(sshd_config(host.address, host.port, host_key.private, self.authorized_keys))
            (host.root / "net.batch").write_text("\n".join(network.inside_batch(host.slot)) + "\n")
            lines.append(keys.known_hosts_line(host.address, host.port, host_key.public))
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _spawn_holders(self, deadline: float) -> None:
        """Start every host's namespace holder and wait for each to report ready (side effects)."""
        for host in self.hosts:
            script = holder_script(host.root / "www", host.root / "run", host.root / "net.batch", host.name)
            argv = ["nsenter", f"--net={network.NETNS_DIR / host.netns}"]
            argv += ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script]
            with (host.root / "holder.log").open("ab") as log:
                host._holder = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, cwd="/"
                )
                host._ns_ids = {i for i in [procs.netns_id(network.NETNS_DIR / host.netns)] if i}
            host.holder_pid = host._holder.pid
        _wait_holders_ready(self.hosts, deadline)
        for host in self.hosts:
            assert host.holder_pid is not None
            host._ns_ids |= {i for kind in ("mnt", "net") if (i := procs.namespace_id(host.holder_pid, kind))}

    def close(self) -> None:
        """Kill every process inside the hosts, delete veths, namespaces and the workdir (side effects; idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        errors: list[str] = []
        survivors = procs.kill_all(set().union(*(h._ns_ids for h in self.hosts)))
        if survivors:
            errors.append(f"processes survived SIGKILL: {survivors}")
        for host in self.hosts:
            _reap_children(host)
        try:
            network.delete_links([h.link for h in self.hosts], [h.netns for h in self.hosts])
        except LabError as error:
            errors.append(str(error))
        if self.prefix is not None:
            registry.remove(self.prefix)
        self._remove_workdir()
        if errors:
            raise LabError("lab cleanup incomplete: " + "; ".join(errors))

    def _remove_workdir(self) -> None:
        """Delete the workdir if the lab created it, else only what the lab put there (side effects)."""
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        shutil.rmtree(self.workdir / "hosts", ignore_errors=True)
        for path in (self.client_key, Path(f"{self.client_key}.pub"), self.known_hosts, self.authorized_keys):
            path.unlink(missing_ok=True)

    def __enter__(self) -> HostLab:
        return self.start() if not self._started else self

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

    def release_yaml_hosts(self) -> list[dict[str, str | int]]:
        """The hosts as Release spec.hosts entries (pure)."""
        return [{"name": h.name, "address": h.address, "port": h.port, "user": "root"} for h in self.hosts]

    def ssh_argv(self, host: LabHost, *command: str) -> list[str]:
        """An OpenSSH client command line for `host` with strict host key checking (pure)."""
        return [
            "ssh",
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-p",
            str(host.port),
            f"root@{host.address}",
            *command,
        ]


def _wait_holders_ready(hosts: Sequence[LabHost], deadline: float) -> None:
    """Wait until each holder printed READY_LINE; raises LabError if one fails or is late (side effects)."""
    with selectors.DefaultSelector() as selector:
        for host in hosts:
            assert host._holder is not None
            assert host._holder.stdout is not None
            selector.register(host._holder.stdout, selectors.EVENT_READ, host)
        while selector.get_map():
            events = selector.select(timeout=max(0.0, deadline - time.monotonic()))
            if not events:
                raise LabError("namespace holders did not become ready in time")
            for key, _ in events:
                host = key.data
                assert isinstance(host, LabHost)
                assert host._holder is not None
                assert host._holder.stdout is not None
                line = host._holder.stdout.readline().strip()
                if line != READY_LINE:
                    raise LabError(f"{host.name}: namespace setup failed: {_log_tail(host.root / 'holder.log')}")
                selector.unregister(host._holder.stdout)
                host._holder.stdout.close()


def _reap_children(host: LabHost) -> None:
    """Kill (if still alive) and wait for the holder and sshd processes the lab started (side effects)."""
    for child in (host._sshd, host._holder):
        if child is None:
            continue
        if child.poll() is None:
            child.kill()
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            continue
        if child.stdout is not None:
            child.stdout.close()
