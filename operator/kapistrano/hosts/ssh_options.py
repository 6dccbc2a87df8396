"""asyncssh.connect options for a host: the operator's (its Secret's key and known_hosts only) and the
command line's (the person's ssh config, ssh-agent and key passphrases on top).

Private key material never appears in logs or exceptions: an import error is never chained.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from kapistrano.hosts.errors import AuthFailed, HostKeyMismatch

if TYPE_CHECKING:
    from kapistrano.hosts.ssh import SshTarget

log = logging.getLogger("kapistrano.hosts.ssh")  # where SSH warnings have always been logged


@dataclass(frozen=True)
class LocalSsh:
    """A person's own SSH set-up, used by the command line only (the operator uses its Secret alone).

    ssh_config files (Host aliases, HostName, User, Port, IdentityFile, ProxyJump chains), the
    ssh-agent and a passphrase for encrypted keys. The Release's user and port win where it names
    them; elsewhere the config's apply.
    """

    config_paths: tuple[str, ...] = ()
    passphrase: str | None = field(default=None, repr=False)
    user_from_config: bool = False
    port_from_config: bool = False


# Every connect needs the key and the known_hosts, and a Secret's known_hosts names every host of the
# Release: parsing them per connect made connecting to N hosts cost O(N^2). They are parsed once per
# content (both are only read after parsing, so connections may share them).
@functools.lru_cache(maxsize=64)
def _imported_key(key: bytes | str, passphrase: str | None) -> asyncssh.SSHKey:
    """The private key parsed from its text (pure; cached by content)."""
    return asyncssh.import_private_key(key, passphrase)


@functools.lru_cache(maxsize=64)
def _imported_known_hosts(text: str) -> asyncssh.SSHKnownHosts:
    """known_hosts parsed from its text (pure; cached by content)."""
    return asyncssh.import_known_hosts(text)


def load_client_key(target: SshTarget) -> asyncssh.SSHKey:
    """Parse the client private key (pure; reads the key file when given a path)."""
    key = target.client_key
    passphrase = target.local.passphrase if target.local is not None else None
    if key is None:
        raise AuthFailed(target.name, "no client private key given")
    try:
        if isinstance(key, Path):
            return asyncssh.read_private_key(key, passphrase)
        return _imported_key(key, passphrase)
    except asyncssh.KeyEncryptionError:
        raise AuthFailed(target.name, "the passphrase of the client private key is wrong") from None
    except (asyncssh.KeyImportError, ValueError, OSError):
        # The original exception may quote key material: never chain it.
        raise AuthFailed(target.name, "the client private key cannot be read or parsed") from None


def known_hosts_arg(target: SshTarget) -> asyncssh.SSHKnownHosts | None:
    """The known_hosts to verify against, or None (logged) when checking is explicitly disabled."""
    if target.insecure_skip_host_key_check:
        log.warning("host key check DISABLED for %s (insecureSkipHostKeyCheck)", target.name)
        return None
    content = target.known_hosts
    if content is None:
        raise HostKeyMismatch(target.name, "no known_hosts given and insecureSkipHostKeyCheck is false")
    try:
        if isinstance(content, Path):
            return asyncssh.read_known_hosts(str(content))
        text = content.decode() if isinstance(content, bytes) else content
        return _imported_known_hosts(text)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise HostKeyMismatch(target.name, f"known_hosts cannot be parsed: {exc}") from None


#: AES-GCM first: one AEAD call per packet, ~30% less client CPU per session than asyncssh's
#: default ChaCha20-Poly1305 (benchmarks/README.md); every cipher here is one OpenSSH offers.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)


def connect_options(target: SshTarget) -> dict[str, Any]:
    """asyncssh.connect keyword arguments for a target: key auth only, no user config (side effect: logs)."""
    if target.local is not None:
        return _local_options(target, target.local)
    return {
        "username": target.user,
        "client_keys": [load_client_key(target)],
        "known_hosts": known_hosts_arg(target),
        "keepalive_interval": target.keepalive_interval,
        "keepalive_count_max": target.keepalive_count_max,
        "connect_timeout": target.connect_timeout,
        "encryption_algs": CIPHERS,
        "preferred_auth": "publickey",
        "agent_path": None,
        "password": None,
        "kbdint_auth": False,
        "gss_auth": False,
        "config": [],
    }


def _local_options(target: SshTarget, local: LocalSsh) -> dict[str, Any]:
    """asyncssh.connect keyword arguments for the command line: the user's config, agent and keys (side effect: logs).

    What is left out, asyncssh takes from the config files and its defaults: ~/.ssh keys and
    known_hosts, the agent at $SSH_AUTH_SOCK (or the config's IdentityAgent).
    """
    options: dict[str, Any] = {
        "config": list(local.config_paths),
        "passphrase": local.passphrase,
        "keepalive_interval": target.keepalive_interval,
        "keepalive_count_max": target.keepalive_count_max,
        "connect_timeout": target.connect_timeout,
        "password": None,
        "kbdint_auth": False,
    }
    if target.known_hosts is not None or target.insecure_skip_host_key_check:
        options["known_hosts"] = known_hosts_arg(target)
    if not target.insecure_skip_host_key_check:
        _refuse_unchecked_hops(target, local)
    if target.client_key is not None:
        options["client_keys"] = [load_client_key(target)]
    if not local.user_from_config:
        options["username"] = target.user
    return options


def _refuse_unchecked_hops(target: SshTarget, local: LocalSsh) -> None:
    """Raise HostKeyMismatch when the ssh config turns host key checks off (UserKnownHostsFile none).

    That covers the host itself unless known_hosts was given, and every ProxyJump hop, which asyncssh
    reaches with the config alone. Reads the config files through asyncssh.
    """
    config = list(local.config_paths)
    if not config:
        return
    found = asyncssh.SSHClientConnectionOptions(host=target.address, config=config, client_keys=None)
    hops = [h.rsplit("@", 1)[-1].rsplit(":", 1)[0] for h in str(found.tunnel or "").split(",") if h]
    unchecked = [] if target.known_hosts is not None or found.known_hosts is not None else [target.address]
    for hop in hops:
        if asyncssh.SSHClientConnectionOptions(host=hop, config=config, client_keys=None).known_hosts is None:
            unchecked.append(hop)
    if unchecked:
        raise HostKeyMismatch(
            target.name,
            f"the ssh config turns host key checks off for {', '.join(unchecked)} (UserKnownHostsFile none); "
            "set spec.ssh.insecureSkipHostKeyCheck to allow that",
        )
