"""One lab host: its namespace holder, its sshd, commands run inside it, and its network link.

The holder is a long-lived process (``sleep infinity``) that owns the host's network, mount and UTS
namespaces. sshd and every command run with exec() enter those namespaces with nsenter, so sshd can
be stopped and started again while the host's private directories keep their content.
"""

from __future__ import annotations

import selectors
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import network, procs
from .network import LabError, Slot
from .sshd import READY_LINE, SSHD

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.005
LOG_TAIL_CHARS = 2000
#: Host paths that are always private; maps the host path to its directory under LabHost.root.
#: /root is private too: a host starts with an empty home, like a fresh machine, so no shell start-up
#: file of this machine (e.g. a slow .bashrc) runs with every SSH command.
DEFAULT_PRIVATE = {"/var/www": "www", "/run": "run", "/root": "root"}
#: Aliases resolved by path(): on Debian /var/run is a symlink to /run.
PATH_ALIASES = {"/var/run": "/run"}
#: The environment of commands and sshd inside a host, like a fresh login rather than the caller's.
HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/sh",
    "LANG": "C.UTF-8",
}


class LabCommandError(subprocess.CalledProcessError):
    """A command run with LabHost.exec(check=True) failed; str() includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {str(self.stderr or '').strip()[-LOG_TAIL_CHARS:]}"


def log_tail(path: Path) -> str:
    """The end of a log file, "" if missing (reads the file)."""
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip()
    except OSError:
        return ""


def accepts(address: str, port: int) -> bool:
    """True when a TCP connection to address:port succeeds (side effect: opens and closes one)."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(eq=False)
class LabHost:
    """One test host. `root` is its directory on the root filesystem (private dirs, keys, config, logs)."""

    name: str
    address: str
    gateway: str
    netns: str
    link: str
    root: Path
    slot: Slot = field(repr=False)
    port: int = 22
    #: Private host directories -> directory name under `root`; /var/www and /run at least.
    private: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PRIVATE), repr=False)
    holder_pid: int | None = None
    _holder: subprocess.Popen[str] | None = field(default=None, repr=False)
    _sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _ns_ids: set[str] = field(default_factory=set, repr=False)
    _cut: bool = field(default=False, repr=False)

    # -- facts -------------------------------------------------------------------------------------

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

    @property
    def link_cut(self) -> bool:
        """True between cut_link() and restore_link() (pure)."""
        return self._cut

    def path(self, remote: str | PurePosixPath) -> Path:
        """Where an absolute host path lives on the root filesystem (pure).

        Private directories map into `root`; every other path is shared with the root namespace.
        Symlinks are not followed (an absolute link target is a host path: map it again).
        """
        posix = PurePosixPath(remote)
        if not posix.is_absolute():
            raise ValueError(f"host path must be absolute: {remote}")
        for alias, target in PATH_ALIASES.items():
            if posix.is_relative_to(alias):
                posix = PurePosixPath(target) / posix.relative_to(alias)
        for mount in sorted(self.private, key=len, reverse=True):
            if posix.is_relative_to(mount):
                return self.root / self.private[mount] / posix.relative_to(mount)
        return Path(posix)

    def processes(self) -> list[int]:
        """Pids of live processes inside the host, the namespace holder excluded (reads /proc)."""
        return [pid for pid in procs.pids_in(self._ns_ids) if pid != self.holder_pid]

    def pids_of(self, pattern: str) -> list[int]:
        """Pids of processes inside the host whose command line matches the regex `pattern` (reads /proc)."""
        return procs.matching(self.processes(), pattern)

    # -- commands ----------------------------------------------------------------------------------

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
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the host (a str runs with `sh -c`) (side effects).

        The environment is HOST_ENV updated with `env`. Output is captured, so a daemon started in the
        background must redirect its stdout/stderr. Raises LabCommandError when check and exit != 0.
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
            env={**HOST_ENV, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise LabCommandError(proc.returncode, command, proc.stdout, proc.stderr)
        return proc

    # -- sshd --------------------------------------------------------------------------------------

    def spawn_sshd(self) -> None:
        """Start sshd inside the host's namespaces without waiting for it (side effect: a process)."""
        with self.sshd_log.open("ab") as log:
            self._sshd = subprocess.Popen(
                [*self.enter_argv(), SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=HOST_ENV,
            )

    def accepting(self) -> bool:
        """True when sshd accepts TCP; raises LabError if sshd exited (side effect: one connection)."""
        if self.sshd_pid is None:
            raise LabError(f"{self.name}: sshd is not running: {log_tail(self.sshd_log)}")
        return accepts(self.address, self.port)

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

    # -- network -----------------------------------------------------------------------------------

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

    # -- lifecycle (driven by HostLab) -------------------------------------------------------------

    def spawn_holder(self, script: str) -> None:
        """Start the namespace holder running `script` in fresh namespaces (side effect: a process)."""
        argv = ["nsenter", f"--net={network.NETNS_DIR / self.netns}"]
        argv += ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script]
        netns = procs.netns_id(network.NETNS_DIR / self.netns)
        self._ns_ids |= {netns} if netns else set()
        with (self.root / "holder.log").open("ab") as log:
            self._holder = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, cwd="/", env=HOST_ENV
            )
        self.holder_pid = self._holder.pid

    def holder_ready(self) -> None:
        """Read the holder's ready line and note its namespaces; raises LabError if it failed (side effects)."""
        assert self._holder is not None
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline().strip()
        self._holder.stdout.close()
        if line != READY_LINE:
            raise LabError(f"{self.name}: namespace setup failed: {log_tail(self.root / 'holder.log')}")
        self._ns_ids |= {i for kind in ("mnt", "net") if (i := procs.namespace_id(self._holder.pid, kind))}

    def reap(self) -> None:
        """Kill (if still alive) and wait for the holder and sshd processes the lab started (side effects)."""
        for child in (self._sshd, self._holder):
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


def wait_holders_ready(hosts: Sequence[LabHost], deadline: float) -> None:
    """Wait until every holder reported ready; raises LabError if one fails or is late (side effects)."""
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
                selector.unregister(key.fileobj)
                key.data.holder_ready()


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
