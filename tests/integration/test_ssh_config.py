"""The command line uses the SSH set-up people have: ~/.ssh/config (Host aliases, ProxyJump) and ssh-agent."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import shutil
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kapistrano.lab import HostLab

from .appkit import App
from .safety import current_release, release_version


@pytest.fixture
def app(two_host_app: App) -> App:
    """This module's tests run on two lab hosts."""
    return two_host_app


@contextlib.contextmanager
def ssh_agent(key: Path, where: Path) -> Iterator[str]:
    """An ssh-agent of our own holding `key`; yields its socket and stops it by pid afterwards."""
    sock = where / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert agent.poll() is None, "ssh-agent exited"
            assert time.monotonic() < deadline, "ssh-agent made no socket"
            time.sleep(0.01)
        private = where / "id_lab"
        shutil.copy(key, private)
        private.chmod(0o600)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(private)], env=env, check=True, capture_output=True, timeout=30)
        private.unlink()  # from now on the key is in the agent only
        yield str(sock)
    finally:
        agent.terminate()
        agent.wait(10)


def ssh_config(lab: HostLab, jump_port: int) -> str:
    """A config with an alias for the second lab host reached through the first (ProxyJump)."""
    jump, target = lab.hosts
    return f"""\
Host jumpbox
    HostName {jump.address}
    Port {jump_port}
    User root

Host app-target
    HostName {target.address}
    Port {target.port}
    User root
    ProxyJump jumpbox

Host *
    UserKnownHostsFile {lab.known_hosts}
"""


def kapistrano_as(home: Path, agent: str | None, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the kapistrano command with its own HOME and, if given, the agent's socket."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"} | {"HOME": str(home)}
    env |= {"SSH_AUTH_SOCK": agent} if agent else {}
    command = [sys.executable, "-m", "kapistrano.cli.main", *map(str, argv)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_apply_reaches_a_host_alias_through_proxyjump_with_only_the_agent(app: App, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    config = home / ".ssh" / "config"
    jump, target = app.lab.hosts
    app.lab.route_between_hosts()
    document = app.manifest("v1", hosts=[{"name": "web", "address": "app-target"}], ssh={"connectTimeoutSeconds": 5})
    release = app.root / "release.yaml"
    release.write_text(yaml.safe_dump(document, sort_keys=False))

    with ssh_agent(app.lab.client_key, tmp_path) as agent:
        config.write_text(ssh_config(app.lab, jump_port=1))  # nothing listens there: the jump is needed
        broken = kapistrano_as(home, agent, "status", "-f", release)
        assert "Unreachable" in broken.stdout, broken.stdout + broken.stderr

        config.write_text(ssh_config(app.lab, jump_port=jump.port))
        without_agent = kapistrano_as(home, None, "status", "-f", release)
        assert "app-target refused the client key" in without_agent.stdout, without_agent.stdout

        applied = kapistrano_as(home, agent, "apply", "-f", release)
        assert applied.returncode == 0, applied.stdout + applied.stderr
    assert release_version(app, target.name, current_release(app, target.name)) == "v1"
    assert not jump.path("/var/www/app").exists(), "the jump host was deployed to"


def test_a_passphrase_protected_key_is_used_with_its_passphrase_file(app: App, tmp_path: Path) -> None:
    key = tmp_path / "id_protected"
    shutil.copy(app.lab.client_key, key)
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", "open sesame", "-f", str(key)], check=True, capture_output=True)
    phrase = tmp_path / "passphrase"
    phrase.write_text("open sesame\n")
    release = app.write("v1")
    base = ["apply", "-f", release, "--ssh-key", key, "--known-hosts", app.lab.known_hosts]

    refused = kapistrano_as(tmp_path, None, *base)
    assert refused.returncode == 1
    assert "--ssh-key-passphrase-file" in refused.stdout + refused.stderr

    applied = kapistrano_as(tmp_path, None, *base, "--ssh-key-passphrase-file", phrase)
    assert applied.returncode == 0, applied.stdout + applied.stderr


def test_the_passphrase_is_asked_for_on_a_terminal(app: App, tmp_path: Path) -> None:
    key = tmp_path / "id_protected"
    shutil.copy(app.lab.client_key, key)
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", "open sesame", "-f", str(key)], check=True, capture_output=True)
    argv = ["apply", "-f", str(app.write("v1")), "--ssh-key", str(key), "--known-hosts", str(app.lab.known_hosts)]
    status, output = answer_in_terminal([sys.executable, "-m", "kapistrano.cli.main", *argv], "open sesame\n")
    assert f"passphrase for {key}" in output
    assert status == 0, output[-2000:]


def answer_in_terminal(argv: list[str], answer: str, timeout: float = 120) -> tuple[int, str]:
    """Run a command on a terminal of its own, type `answer` once it asks; (exit status, all it wrote)."""
    leader, follower = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, preexec_fn=own_terminal)  # noqa: PLW1509
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([leader], [], [], 1.0)[0]:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                seen += chunk
                if answer and b"passphrase for" in seen:
                    os.write(leader, answer.encode())
                    answer = ""
        return proc.wait(10), seen.decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
