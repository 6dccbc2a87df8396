"""Hosts over SSH: one asyncssh connection per host, reused for every command (channels multiplexed).

Host keys are verified against the known_hosts content from the Release's Secret;
`insecureSkipHostKeyCheck` is the only bypass and it logs a warning. Every asyncssh, OS and timeout
error is turned into a HostError by `classify`, the one place that knows asyncssh's exceptions.
Private key material never appears in logs, exceptions or reprs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncssh
from prometheus_client import Counter
from pydantic import BaseModel

from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.hosts.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimeout,
    HostError,
    HostKeyMismatch,
    TcpConnectFailed,
    Unreachable,
)
from kapistrano.hosts.hub import SshHub
from kapistrano.hosts.runner import CommandResult
from kapistrano.hosts.ssh_options import LocalSsh, connect_options
from kapistrano.hosts.tcp import open_stream

log = logging.getLogger(__name__)

#: Operator-wide SSH work: each `exec` is one sshd session (a fork and a shell on the host), each
#: `connect` one key exchange; what a deploy costs the hosts, and most of the operator's CPU per host.
SSH_OPENED = Counter(
    "kapistrano_ssh_opened_total",
    "SSH connections (connect), exec sessions (exec) and direct-tcpip streams (tcp) opened.",
    ["kind"],
)

#: OpenSSH's default MaxSessions: channels one connection may have open at once.
DEFAULT_MAX_SESSIONS = 10


@dataclass(frozen=True)
class SshTarget:
    """Everything needed to reach one host. `client_key` is a private key (bytes) or a key file path.

    With `local`, the key may be None: the agent or the ssh config's IdentityFile provide one.
    """

    name: str
    address: str
    client_key: bytes | Path | None = field(repr=False)
    port: int = 22
    user: str = "deploy"
    #: known_hosts content (bytes/str) or a file path; None only with insecure_skip_host_key_check.
    known_hosts: bytes | str | Path | None = field(default=None, repr=False)
    insecure_skip_host_key_check: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    max_sessions: int = DEFAULT_MAX_SESSIONS
    jump: SshTarget | None = None
    local: LocalSsh | None = None

    @property
    def endpoint(self) -> str:
        """user@address:port, for messages; without what the ssh config decides (pure)."""
        local = self.local
        user = "" if local is not None and local.user_from_config else f"{self.user}@"
        port = "" if local is not None and local.port_from_config else f":{self.port}"
        return f"{user}{self.address}{port}"


def targets_from_spec(
    spec: ReleaseSpec, client_key: bytes | Path | None, known_hosts: bytes | str | Path | None
) -> list[SshTarget]:
    """One SshTarget per host of a Release, in rollout order (pure)."""
    return [target_for_host(spec, host, client_key, known_hosts) for host in spec.hosts]


def target_for_host(
    spec: ReleaseSpec,
    host: Host,
    client_key: bytes | Path | None,
    known_hosts: bytes | str | Path | None,
    local: LocalSsh | None = None,
) -> SshTarget:
    """The SshTarget of one host of a Release, with the jump host if any (pure).

    Keepalives go out every connectTimeoutSeconds of silence, and three unanswered ones drop the
    connection: a host that falls off the network mid-command is then Unreachable within a few
    connect timeouts, instead of holding the rollout until the command's own (long) timeout.
    """
    ssh = spec.ssh
    named = "user" in ssh.model_fields_set  # else the ssh config's User applies (command line)
    base = SshTarget(
        name=host.name,
        address=host.address,
        port=host.port,
        user=spec.user_for(host),
        client_key=client_key,
        known_hosts=known_hosts,
        insecure_skip_host_key_check=ssh.insecure_skip_host_key_check,
        connect_timeout=float(ssh.connect_timeout_seconds),
        command_timeout=float(ssh.command_timeout_seconds),
        keepalive_interval=float(ssh.connect_timeout_seconds),
        local=_local_for(local, user_named=named or host.user is not None, model=host),
    )
    if ssh.jump_host is None:
        return base
    jump = replace(
        base,
        name=f"{host.name} (jump host)",
        address=ssh.jump_host.address,
        port=ssh.jump_host.port,
        user=ssh.jump_host.user or ssh.user,
        local=_local_for(local, user_named=named or ssh.jump_host.user is not None, model=ssh.jump_host),
    )
    return replace(base, jump=jump)


def _local_for(local: LocalSsh | None, *, user_named: bool, model: BaseModel) -> LocalSsh | None:
    """The local set-up for one host: the ssh config decides the user and port the Release leaves out (pure)."""
    if local is None:
        return None
    return replace(local, user_from_config=not user_named, port_from_config="port" not in model.model_fields_set)


def classify(exc: BaseException, target: SshTarget, command: str | None = None) -> HostError:
    """Map any asyncssh/OS/timeout error to the HostError the engine understands (pure).

    The first matching row of _CLASSIFIERS wins; order matters: asyncssh's TimeoutError is a
    ProcessError and an asyncio TimeoutError; HostKeyNotVerifiable and PermissionDenied are
    DisconnectErrors.
    """
    if isinstance(exc, HostError):
        return exc
    for kind, build in _CLASSIFIERS:
        if isinstance(exc, kind):
            return build(exc, target, command)
    return Unreachable(target.name, f"{target.endpoint}: {type(exc).__name__}")


def _process_failed(exc: Any, target: SshTarget, command: str | None) -> HostError:
    """CommandFailed from an asyncssh ProcessError (pure)."""
    status = exc.exit_status if exc.exit_status is not None else exc.returncode
    return CommandFailed(target.name, command or _short(exc.command), status, _text(exc.stderr))


_Builder = Callable[[Any, SshTarget, "str | None"], HostError]
_CLASSIFIERS: tuple[tuple[type[BaseException], _Builder], ...] = (
    (
        asyncssh.HostKeyNotVerifiable,
        lambda e, t, _: HostKeyMismatch(t.name, f"host key of {t.address}:{t.port} not trusted: {e.reason}"),
    ),
    (asyncssh.PermissionDenied, lambda e, t, _: AuthFailed(t.name, f"{t.endpoint} refused the client key: {e.reason}")),
    (
        asyncssh.KeyImportError,
        lambda e, t, _: AuthFailed(t.name, f"the client private key cannot be used: {type(e).__name__}"),
    ),
    (
        asyncssh.TimeoutError,
        lambda e, t, c: CommandTimeout(t.name, f"command did not finish within its timeout: {c or _short(e.command)}"),
    ),
    (asyncssh.ProcessError, _process_failed),
    (
        asyncssh.ChannelOpenError,
        lambda e, t, _: Unreachable(t.name, f"{t.endpoint}: cannot open a channel: {e.reason}"),
    ),
    (asyncssh.DisconnectError, lambda e, t, _: Unreachable(t.name, f"{t.endpoint}: connection lost: {e.reason}")),
    (TimeoutError, lambda e, t, _: Unreachable(t.name, f"{t.endpoint}: no connection within {t.connect_timeout:g}s")),
    (OSError, lambda e, t, _: Unreachable(t.name, f"{t.endpoint}: {e.strerror or type(e).__name__}")),
)


def _short(command: str | None, limit: int = 200) -> str:
    """A command line cut for messages (pure)."""
    text = (command or "").replace("\n", "; ")
    return text if len(text) <= limit else text[:limit] + "..."


def _text(data: object) -> str:
    """Process output as text (pure)."""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data if isinstance(data, str) else ""


class SshConnection:
    """A Runner over one asyncssh connection, opened lazily and reopened once if it died idle.

    With a hub (hosts/hub.py), the connection counts against the process's bound and its connects
    and commands are admitted fairly under `key` (its Release); the hub may close it while idle,
    and the next command reconnects.
    """

    def __init__(self, target: SshTarget, *, hub: SshHub | None = None, key: str = "") -> None:
        self.target = target
        self.hub = hub
        self.key = key
        #: Commands and stream opens in flight or waiting; an idle connection (0) may be closed by the hub.
        self.busy = 0
        self.last_used = 0.0
        #: Connect attempts that failed in a row.
        self.failed_connects = 0
        self._conn: asyncssh.SSHClientConnection | None = None
        self._jump: SshConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._sessions = asyncio.Semaphore(max(1, target.max_sessions))
        self.connects = 0
        #: Channels opened so far: exec sessions (one sshd session each) and direct-tcpip streams.
        self.exec_channels = 0
        self.tcp_channels = 0

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"SshConnection({self.target.name!r}, {self.target.endpoint}, {state})"

    @property
    def name(self) -> str:
        """The host's name in the Release."""
        return self.target.name

    @property
    def is_open(self) -> bool:
        """True while the cached connection is usable (pure)."""
        return self._conn is not None and not self._conn.is_closed()

    @property
    def connection(self) -> asyncssh.SSHClientConnection | None:
        """The underlying asyncssh connection, if any (pure; for diagnostics and tests)."""
        return self._conn

    async def connect(self) -> asyncssh.SSHClientConnection:
        """Open the connection unless it is open (side effect: network); one connect in flight."""
        async with self._connect_lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._conn = None
            try:
                async with self._admitted(), asyncio.timeout(self.target.connect_timeout):
                    self._conn = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed_connects += 1
                raise classify(exc, self.target) from None
            self.failed_connects = 0
            self.connects += 1
            SSH_OPENED.labels("connect").inc()
            log.debug("connected to %s (%s)", self.target.name, self.target.endpoint)
            return self._conn

    def _admitted(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The hub's place and connect slot for a connect, or nothing without a hub (side effects: none)."""
        return self.hub.connecting(self) if self.hub is not None else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def _working(self, what: str) -> AsyncIterator[None]:
        """Count one piece of work on the connection; connect first, then hold the hub's slot (network I/O).

        The connect happens before the slot is taken, so a command never waits for a slot its own
        connect would need.
        """
        self.busy += 1
        try:
            await self.connect()
            if self.hub is None:
                yield
                return
            self.hub.touch(self)
            async with self.hub.command(self, what):
                yield
        finally:
            self.busy -= 1
            if self.hub is not None:
                self.hub.touch(self)

    async def _open(self) -> asyncssh.SSHClientConnection:
        """Open the SSH connection, through the jump host if any (side effect: network)."""
        options = connect_options(self.target)
        tunnel: asyncssh.SSHClientConnection | None = None
        if self.target.jump is not None:
            if self._jump is None:
                self._jump = SshConnection(self.target.jump)
            tunnel = await self._jump.connect()
        if tunnel is not None:
            options["tunnel"] = tunnel
        local = self.target.local
        port: int | tuple[()] = () if local is not None and local.port_from_config else self.target.port
        return await asyncssh.connect(self.target.address, port, **options)

    async def run(
        self, command: str, *, timeout: float | None = None, check: bool = True, stdin: str | None = None
    ) -> CommandResult:
        """Run a command line on the host (side effect: whatever the command does)."""

        async def until_done(process: asyncssh.SSHClientProcess[str]) -> asyncssh.SSHCompletedProcess:
            return await process.wait(check=False)

        done = await self._finish(command, stdin, timeout, until_done)
        assert done.returncode is not None
        result = CommandResult(done.returncode, _text(done.stdout), _text(done.stderr))
        log.debug("%s: exit %s: %s", self.name, result.exit_status, _short(command))
        if check and not result.ok:
            raise CommandFailed(self.name, _short(command), result.exit_status, result.stderr)
        return result

    async def stream(
        self,
        command: str,
        on_line: Callable[[str], None],
        *,
        timeout: float | None = None,
        stop_on_cancel: bool = False,
    ) -> int:
        """Run a command, passing each stdout line to `on_line` as it comes; returns the exit status.

        Side effect: whatever the command does. Its stderr is dropped: merge it into stdout (2>&1).
        `timeout` may be math.inf (e.g. `tail -F`); `stop_on_cancel` sends TERM to it when cancelled.
        """

        async def until_done(process: asyncssh.SSHClientProcess[str]) -> asyncssh.SSHCompletedProcess:
            try:
                async for line in process.stdout:
                    if line:  # "" is the end of the output; an empty line is "\n"
                        on_line(line.rstrip("\n"))
                return await process.wait(check=False)
            except asyncio.CancelledError:
                if stop_on_cancel:
                    _abandon(process)
                raise

        done = await self._finish(command, None, timeout, until_done)
        assert done.returncode is not None
        return done.returncode

    async def _finish(
        self,
        command: str,
        stdin: str | None,
        timeout: float | None,
        until_done: Callable[[asyncssh.SSHClientProcess[str]], Awaitable[asyncssh.SSHCompletedProcess]],
    ) -> asyncssh.SSHCompletedProcess:
        """Start a command and await `until_done` within the timeout; errors classified (side effect: the command)."""
        limit = self.target.command_timeout if timeout is None else timeout
        async with self._sessions, self._working("run"):
            process = await self._start(command, stdin)
            try:
                async with asyncio.timeout(limit if math.isfinite(limit) else None):
                    done = await until_done(process)
            except TimeoutError as exc:
                _abandon(process)
                raise CommandTimeout(self.name, f"command did not finish within {limit:g}s: {_short(command)}") from exc
            except (asyncssh.Error, OSError) as exc:
                raise classify(exc, self.target, _short(command)) from None
        if done.returncode is None:
            raise Unreachable(self.name, f"connection lost while running: {_short(command)}")
        return done

    async def _start(self, command: str, stdin: str | None) -> asyncssh.SSHClientProcess[str]:
        """Start a process, reconnecting once if the cached connection died before it started."""
        for attempt in (1, 2):
            conn = await self.connect()
            try:
                self.exec_channels += 1
                SSH_OPENED.labels("exec").inc()
                return await conn.create_process(command, input=stdin, encoding="utf-8", errors="replace")
            except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
                if attempt == 2 or not conn.is_closed():
                    raise classify(exc, self.target, _short(command)) from None
                log.info("connection to %s was lost; reconnecting", self.name)
        raise AssertionError("unreachable")  # pragma: no cover

    async def open_tcp(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP stream to host:port as seen from the host, over direct-tcpip (side effect: network)."""
        async with self._working("tcp"):
            return await self._open_tcp(host, port)

    async def _open_tcp(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """open_tcp without the bookkeeping, reconnecting once if the connection died (side effect: network)."""
        for attempt in (1, 2):
            conn = await self.connect()
            try:
                self.tcp_channels += 1
                SSH_OPENED.labels("tcp").inc()
                return await open_stream(conn, host, port)
            except asyncssh.ChannelOpenError as exc:
                if conn.is_closed() and attempt == 1:
                    continue
                if exc.code == asyncssh.OPEN_CONNECT_FAILED:
                    raise TcpConnectFailed(self.name, f"{host}:{port} refused or unreachable: {exc.reason}") from None
                raise classify(exc, self.target) from None
            except (asyncssh.DisconnectError, OSError) as exc:
                if attempt == 1 and conn.is_closed():
                    continue
                raise classify(exc, self.target) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close the connection and the jump host's (side effect: network)."""
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
                await conn.wait_closed()
            if self._jump is not None:
                await self._jump.close()
        finally:
            if self.hub is not None:
                self.hub.release(self)


def _abandon(process: asyncssh.SSHClientProcess[str]) -> None:
    """Ask a timed-out remote command to stop, then close its channel (side effect: network)."""
    with contextlib.suppress(asyncssh.Error, OSError, ValueError):
        process.send_signal("TERM")
    process.close()


class SshPool:
    """Connections keyed by host name; one connect in flight per host; safe to share between tasks."""

    def __init__(self) -> None:
        self._connections: dict[str, SshConnection] = {}
        self._stale: list[SshConnection] = []

    def connection(self, target: SshTarget) -> SshConnection:
        """The (possibly not yet connected) connection for a target (pure apart from the cache)."""
        current = self._connections.get(target.name)
        if current is not None and current.target == target:
            return current
        if current is not None:
            self._stale.append(current)
        fresh = SshConnection(target)
        self._connections[target.name] = fresh
        return fresh

    async def get(self, target: SshTarget) -> SshConnection:
        """The connected connection for a target (side effect: connects if needed)."""
        connection = self.connection(target)
        await self.connect_stale_cleanup()
        await connection.connect()
        return connection

    async def connect_stale_cleanup(self) -> None:
        """Close connections replaced by a changed target (side effect: network)."""
        stale, self._stale = self._stale, []
        for old in stale:
            await old.close()

    def names(self) -> Iterable[str]:
        """Host names with a cached connection (pure)."""
        return list(self._connections)

    async def drop(self, name: str) -> None:
        """Close and forget one host's connection (side effect: network)."""
        connection = self._connections.pop(name, None)
        if connection is not None:
            await connection.close()

    async def close(self) -> None:
        """Close every connection (side effect: network)."""
        connections = list(self._connections.values()) + self._stale
        self._connections, self._stale = {}, []
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
