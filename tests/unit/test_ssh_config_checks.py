"""The command line's ssh config may not switch host key checks off behind kapistrano's back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kapistrano.hosts.errors import HostKeyMismatch
from kapistrano.hosts.ssh import SshConnection, SshTarget
from kapistrano.hosts.ssh_options import LocalSsh

CONFIG = """\
Host app
    HostName 192.0.2.10
    ProxyJump careless,bastion

Host careless
    HostName 192.0.2.11
    UserKnownHostsFile none

Host bastion
    HostName 192.0.2.12
"""


def connect(tmp_path: Path, address: str, known_hosts: str | None) -> None:
    """Try to connect to `address` with the config above (fails before any network I/O when refused)."""
    config = tmp_path / "config"
    config.write_text(CONFIG)
    local = LocalSsh(config_paths=(str(config),), user_from_config=True, port_from_config=True)
    target = SshTarget(name="web", address=address, client_key=None, known_hosts=known_hosts, local=local)
    asyncio.run(SshConnection(target).connect())


def test_a_jump_host_without_host_key_checks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HostKeyMismatch, match=r"host key checks off for careless \(UserKnownHostsFile none\)"):
        connect(tmp_path, "app", known_hosts="192.0.2.10 ssh-ed25519 AAAA\n")


def test_the_host_itself_without_host_key_checks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HostKeyMismatch, match=r"host key checks off for careless"):
        connect(tmp_path, "careless", known_hosts=None)
