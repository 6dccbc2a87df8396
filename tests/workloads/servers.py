"""Redis and RabbitMQ servers of the workload tests: own processes on free ports, tracked by pid.

Each server runs from a temporary directory, listens on 0.0.0.0 (lab hosts reach it through their
gateway), and is stopped by pid at the end: SIGTERM, a deadline, then SIGKILL. RabbitMQ also starts
an epmd daemon; it gets its own port (ERL_EPMD_PORT) so the one found by that port is ours.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from kapistrano.lab import procs

T = TypeVar("T")
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # the real script, not Debian's su wrapper


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 60.0, period: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def free_port() -> int:
    """A TCP port nobody listens on right now (binds and releases it)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM `pid`, wait until it is gone, SIGKILL after `timeout` (stops a process)."""
    if not procs.kill(pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    while procs.is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if procs.is_alive(pid):
        procs.kill(pid, signal.SIGKILL)
        wait_until(lambda: not procs.is_alive(pid), f"pid {pid} to die after SIGKILL", 10)


@dataclass
class Tracked:
    """A server process started by a test, plus any daemon it spawned, all stopped by pid."""

    process: subprocess.Popen[bytes]
    extra: list[int] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the server, then every extra pid (stops processes)."""
        stop_pid(self.process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for pid in self.extra:
            stop_pid(pid)


def spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Tracked:
    """Start a server in its own session with output to `log` (starts a process)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=log.parent,
        )
    return Tracked(process)


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port (a connection)."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- Redis --------------------------------------------------------------------------------------------


class RespError(Exception):
    """An error reply from Redis."""


Reply = int | bytes | None | list["Reply"]


class Resp:
    """A minimal RESP2 client: enough for SADD/SMEMBERS/HMGET/LPUSH in the tests (one socket, not thread-safe)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        """Close the connection."""
        self.file.close()
        self.sock.close()

    def pipeline(self, *commands: Sequence[str | bytes | int]) -> list[Reply]:
        """Send every command, read every reply (network I/O)."""
        out = bytearray()
        for command in commands:
            out += b"*%d\r\n" % len(command)
            for arg in command:
                data = arg if isinstance(arg, bytes) else str(arg).encode()
                out += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(bytes(out))
        return [self._read() for _ in commands]

    def call(self, *command: str | bytes | int) -> Reply:
        """One command and its reply (network I/O)."""
        return self.pipeline(command)[0]

    def _read(self) -> Reply:
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise RespError(f"unexpected reply {line!r}")


@dataclass
class RedisServer:
    """`redis-server` on a free port bound to 0.0.0.0, no persistence, in a temporary directory."""

    port: int
    workdir: Path
    tracked: Tracked

    def client(self) -> Resp:
        """A new connection (network I/O)."""
        return Resp(self.port)

    def url(self, address: str) -> str:
        """The redis:// URL lab hosts use, given the root-namespace address they reach (pure)."""
        return f"redis://{address}:{self.port}/0"


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start redis-server, wait until it answers PING, stop it by pid at the end (a process)."""
    workdir = Path(tempfile.mkdtemp(prefix="kapredis-"))
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "0.0.0.0", "--protected-mode", "no"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"]
    tracked = spawn(argv, workdir / "redis.log")
    try:
        server = RedisServer(port, workdir, tracked)
        wait_until(lambda: tracked.process.poll() is None and accepts(port), "redis-server to accept", 20)
        client = server.client()
        try:
            assert client.call("PING") == b"PONG"
        finally:
            client.close()
        yield server
    finally:
        tracked.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- RabbitMQ -----------------------------------------------------------------------------------------


@dataclass
class RabbitServer:
    """A RabbitMQ node on free ports with `loopback_users = none` (guest works from the lab hosts)."""

    port: int
    workdir: Path
    tracked: Tracked

    def url(self, address: str) -> str:
        """The amqp:// URL lab hosts use, given the root-namespace address they reach (pure)."""
        return f"amqp://guest:guest@{address}:{self.port}/%2F"


def epmd_pids(port: int) -> list[int]:
    """Live epmd processes started with ERL_EPMD_PORT=port (reads /proc)."""
    found = []
    marker = f"ERL_EPMD_PORT={port}".encode()
    for pid in procs.matching(procs.all_pids(), r"(^|/)epmd( |$)"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(pid)
    return found


def amqp_ready(port: int) -> bool:
    """Whether the broker completes an AMQP handshake on 127.0.0.1:port (a connection)."""
    import pika  # type: ignore[import-untyped]  # noqa: PLC0415 - only the RabbitMQ tests need pika

    try:
        params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{port}/%2F?connection_attempts=1&socket_timeout=1")
        pika.BlockingConnection(params).close()
    except Exception:  # any failure means "not yet"
        return False
    return True


@contextlib.contextmanager
def rabbit_server() -> Iterator[RabbitServer]:
    """Start a RabbitMQ node (and its own epmd), wait for AMQP, stop both by pid at the end (processes)."""
    workdir = Path(tempfile.mkdtemp(prefix="kaprabbit-"))
    port, dist, epmd = free_port(), free_port(), free_port()
    (workdir / "rabbitmq.conf").write_text("loopback_users = none\n")
    (workdir / "enabled_plugins").write_text("[].\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(workdir),  # the Erlang cookie lives here, not in /root
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": f"kaptest{port}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_NODE_IP_ADDRESS": "0.0.0.0",
        "RABBITMQ_DIST_PORT": str(dist),
        "ERL_EPMD_PORT": str(epmd),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
    }
    tracked = spawn([str(RABBITMQ_SERVER)], workdir / "rabbitmq.out", env)
    pid_file = workdir / "rabbitmq.pid"
    try:
        wait_until(lambda: tracked.process.poll() is None and amqp_ready(port), "RabbitMQ to accept AMQP", 90, 0.2)
        yield RabbitServer(port, workdir, tracked)
    finally:
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        if text.isdigit():
            stop_pid(int(text))  # the Erlang VM first, then its start script
        tracked.extra.extend(epmd_pids(epmd))
        tracked.stop()
        shutil.rmtree(workdir, ignore_errors=True)
