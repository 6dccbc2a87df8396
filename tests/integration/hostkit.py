"""Helpers for the SSH, layout and fetch integration tests: targets for lab hosts, a git daemon and
an HTTP server in the root namespace that lab hosts reach at their gateway address."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from kapistrano.hosts.ssh import SshConnection, SshTarget
from kapistrano.lab import HostLab, LabHost

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": tempfile.gettempdir(),
}


def target_for(lab: HostLab, host: LabHost, **overrides: object) -> SshTarget:
    """An SshTarget for a lab host as root with the lab's key and known_hosts (reads the key file)."""
    base = SshTarget(
        name=host.name,
        address=host.address,
        port=host.port,
        user="root",
        client_key=lab.client_key.read_bytes(),
        known_hosts=lab.known_hosts.read_text(),
        connect_timeout=5.0,
        command_timeout=60.0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def connections(lab: HostLab) -> list[SshConnection]:
    """One (lazy) SshConnection per lab host."""
    return [SshConnection(target_for(lab, host)) for host in lab.hosts]


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, period: float = 0.02) -> None:
    """Poll an async condition until true; fails the test past the deadline."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(period)


def free_port() -> int:
    """A TCP port free on 0.0.0.0 right now."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def git(*args: str, cwd: Path) -> str:
    """Run git in `cwd` and return its stdout; raises on failure."""
    proc = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@dataclass
class GitServer:
    """A bare repository served by `git daemon` on 0.0.0.0:<port>; hosts clone git://<gateway>:<port>/app.git."""

    root: Path
    port: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bare(self) -> Path:
        """The served bare repository."""
        return self.root / "srv" / "app.git"

    def url(self, host: LabHost) -> str:
        """The repository URL as seen from a lab host."""
        return f"git://{host.gateway}:{self.port}/app.git"

    def commit_release(self, tag: str, files: dict[str, str]) -> str:
        """Commit files in the work tree, tag and push; returns the commit sha."""
        work = self.root / "work"
        for name, content in files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"release {tag}", cwd=work)
        git("tag", tag, cwd=work)
        git("push", "-q", "origin", "HEAD:refs/heads/main", f"refs/tags/{tag}", cwd=work)
        sha = git("rev-parse", "HEAD", cwd=work)
        self.tags[tag] = sha
        return sha

    def start(self) -> GitServer:
        """Create the repositories and start the daemon; waits until it accepts (side effects)."""
        (self.root / "srv").mkdir(parents=True)
        git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=self.root)
        git("init", "-q", "-b", "main", str(self.root / "work"), cwd=self.root)
        git("remote", "add", "origin", str(self.bare), cwd=self.root / "work")
        self.port = free_port()
        argv = ["git", "daemon", "--export-all", "--reuseaddr", f"--base-path={self.root / 'srv'}"]
        argv += ["--listen=0.0.0.0", f"--port={self.port}", str(self.root / "srv")]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _wait_port("127.0.0.1", self.port, self.process)
        return self

    def stop(self) -> None:
        """Stop the daemon we started, by its pid (side effects)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process is not None and process.stderr is not None:
            process.stderr.close()


def _wait_port(address: str, port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Poll until a TCP port accepts; raises if the process died or the deadline passed."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read() if process.stderr else ''!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {address}:{port}")
        time.sleep(0.01)


@contextlib.contextmanager
def git_server() -> Iterator[GitServer]:
    """A started GitServer in a temp dir, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="kapistrano-git-"))
    server = GitServer(root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class HttpServer:
    """Files served over HTTP on 0.0.0.0:<port> from a directory, in a thread."""

    directory: Path
    port: int

    def url(self, host: LabHost, name: str) -> str:
        """The URL of a served file as seen from a lab host."""
        return f"http://{host.gateway}:{self.port}/{name}"

    def add_archive(self, name: str, files: dict[str, str], prefix: str = "") -> str:
        """Write a .tar.gz of `files` (under `prefix/` if given); returns its sha256."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path, content in files.items():
                data = content.encode()
                info = tarfile.TarInfo(f"{prefix}/{path}" if prefix else path)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        blob = buffer.getvalue()
        (self.directory / name).write_bytes(blob)
        return hashlib.sha256(blob).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request logging."""


@contextlib.contextmanager
def http_server() -> Iterator[HttpServer]:
    """An HTTP file server in a thread on a free port; shut down and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="kapistrano-http-"))
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield HttpServer(directory, int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        shutil.rmtree(directory, ignore_errors=True)
