"""Pieces the offline subcommands share: loading a Release file, SSH credentials, the state file."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from kapistrano.api.release import Release, ReleaseFileError, load_releases
from kapistrano.api.spec import Hooks
from kapistrano.hosts.hub import DEFAULT_MAX_CONNECTIONS, DEFAULT_SLOTS, SshHub, fit_connections
from kapistrano.hosts.scheduler import SLOT_LEASE_SECONDS
from kapistrano.hosts.ssh_options import LocalSsh


class CliError(Exception):
    """A problem to print as one line and exit 1 with."""


@dataclass(frozen=True)
class Credentials:
    """Client key (None: the agent or the ssh config provide one), known_hosts, and the user's SSH set-up."""

    private_key: bytes | None = field(repr=False)
    known_hosts: bytes | None = field(repr=False)
    #: None: the operator's way, the Secret's key and known_hosts only (kubectl kapistrano logs).
    local: LocalSsh | None = field(default_factory=LocalSsh)


def add_release_args(parser: argparse.ArgumentParser) -> None:
    """The -f/--name/--ssh-key/--known-hosts options of apply, plan and status (changes the parser)."""
    parser.add_argument("-f", "--filename", required=True, type=Path, help="YAML file with a Release")
    parser.add_argument("--name", help="which Release of the file, when it holds several")
    parser.add_argument("--ssh-key", type=Path, help="private key file (default: ssh-agent, ssh config, ~/.ssh/id_*)")
    parser.add_argument("--known-hosts", type=Path, help="known_hosts file (default: ~/.ssh/known_hosts)")
    parser.add_argument("--hosts", help="only these hosts, comma-separated (as Capistrano's HOSTS=)")
    parser.add_argument("--roles", help="only hosts with one of these roles, comma-separated (as ROLES=)")
    parser.add_argument("--ssh-config", help="ssh_config file (default: ~/.ssh/config; `none` reads none)")
    parser.add_argument("--ssh-key-passphrase-file", type=Path, help="file whose first line is the key's passphrase")


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1 (pure)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_ssh_bounds(parser: argparse.ArgumentParser) -> None:
    """Add the process-wide SSH bounds, --max-ssh-connections and --ssh-concurrency (changes the parser)."""
    parser.add_argument(
        "--max-ssh-connections",
        type=positive,
        default=DEFAULT_MAX_CONNECTIONS,
        help="SSH connections open at once for all Releases together; the least recently used idle one is "
        f"closed for a new one, and reopened when needed (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--ssh-concurrency",
        type=positive,
        default=DEFAULT_SLOTS,
        help="SSH connects and commands admitted at once, shared round-robin by the Releases; a command that "
        f"waits on the host gives its place back after {SLOT_LEASE_SECONDS:g}s (default {DEFAULT_SLOTS})",
    )


def ssh_hub_of(args: argparse.Namespace) -> SshHub:
    """The hub for this process from the command line's bounds (made in the running loop)."""
    connections = fit_connections(getattr(args, "max_ssh_connections", DEFAULT_MAX_CONNECTIONS))
    return SshHub(connections, getattr(args, "ssh_concurrency", DEFAULT_SLOTS))


def pick_release(path: Path, name: str | None) -> Release:
    """The one Release of a file, or the one named (reads the file)."""
    try:
        releases = load_releases(path)
    except ReleaseFileError as exc:
        raise CliError("\n".join(exc.problems)) from None
    if name is not None:
        releases = [r for r in releases if r.metadata.name == name]
        if not releases:
            raise CliError(f"{path}: no Release named {name}")
    if len(releases) > 1:
        raise CliError(f"{path} holds {len(releases)} Releases: choose one with --name")
    return releases[0]


def _names(text: str | None) -> set[str]:
    """The names of a comma-separated option, empty when not given (pure)."""
    return {part.strip() for part in (text or "").split(",") if part.strip()}


def only_hosts(release: Release, hosts: str | None, roles: str | None) -> Release:
    """The Release narrowed to the hosts named and to those with one of the roles named (pure).

    When the primary host is left out, so are the `once` hooks (migrations), as Capistrano's ROLES=
    skips the tasks of the primary host: another host would otherwise run them. Raises CliError when a
    named host does not exist or nothing is left.
    """
    names, wanted = _names(hosts), _names(roles)
    if not names and not wanted:
        return release
    unknown = names - {h.name for h in release.spec.hosts}
    if unknown:
        raise CliError(f"no such host in the Release: {', '.join(sorted(unknown))}")
    kept = [h for h in release.spec.hosts if (not names or h.name in names) and (not wanted or wanted & set(h.roles))]
    if not kept:
        raise CliError("no host of the Release matches --hosts/--roles")
    spec = release.spec.model_copy(update={"hosts": kept})
    if release.spec.primary_host not in {h.name for h in kept}:
        spec = spec.model_copy(update={"hooks": _without_once(spec.hooks)})
    return release.model_copy(update={"spec": spec})


def _without_once(hooks: Hooks) -> Hooks:
    """The hooks less the `once` ones (pure)."""
    phases = ("after_update", "before_publish", "after_publish")
    return hooks.model_copy(update={p: [h for h in getattr(hooks, p) if not h.once] for p in phases})


def release_for(args: argparse.Namespace) -> Release:
    """The Release the command line names, narrowed by --hosts/--roles (reads the file)."""
    release = pick_release(args.filename, args.name)
    return only_hosts(release, getattr(args, "hosts", None), getattr(args, "roles", None))


def _first_existing(*paths: Path) -> Path | None:
    """The first path that exists (reads the filesystem)."""
    return next((p for p in paths if p.exists()), None)


def load_credentials(args: argparse.Namespace, release: Release) -> Credentials:
    """The client key, known_hosts and SSH set-up from the options, ~/.ssh and the agent (reads files, may prompt)."""
    home = Path(os.path.expanduser("~")) / ".ssh"
    passphrase_file: Path | None = getattr(args, "ssh_key_passphrase_file", None)
    passphrase = _passphrase_file(passphrase_file) if passphrase_file else None
    key = read_key(args.ssh_key, passphrase) if args.ssh_key else None
    config = _config_paths(getattr(args, "ssh_config", None), home)
    agent = os.environ.get("SSH_AUTH_SOCK")
    if key is None and not agent and not config and not any(home.glob("id_*")):
        raise CliError("no SSH key: pass --ssh-key FILE, run ssh-agent, or name an IdentityFile in ~/.ssh/config")
    known = args.known_hosts or (home / "known_hosts" if (home / "known_hosts").exists() else None)
    if known is not None and not known.exists():
        raise CliError(f"{known} does not exist")
    local = LocalSsh(config_paths=config, passphrase=passphrase)
    return Credentials(key, known.read_bytes() if known else None, local)


def _config_paths(option: str | None, home: Path) -> tuple[str, ...]:
    """The ssh_config files to read: --ssh-config, `none` for none, else ~/.ssh/config if present (reads the fs)."""
    if option == "none":
        return ()
    if option is not None:
        if not Path(option).exists():
            raise CliError(f"{option} does not exist")
        return (option,)
    return (str(home / "config"),) if (home / "config").exists() else ()


def _passphrase_file(path: Path) -> str:
    """The first line of a passphrase file (reads it)."""
    try:
        return next(iter(path.read_text().splitlines()), "")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None


def read_key(path: Path, passphrase: str | None) -> bytes:
    """The private key, decrypted in memory; asks for its passphrase on a terminal when it needs one (reads files)."""
    try:
        key = asyncssh.read_private_key(path, passphrase)
    except asyncssh.KeyEncryptionError:
        raise CliError(f"{path}: wrong passphrase") from None
    except asyncssh.KeyImportError as exc:
        if "passphrase" not in str(exc).lower():
            raise CliError(f"{path} is not an OpenSSH or PEM private key") from None
        if passphrase is not None or not sys.stdin.isatty():
            raise CliError(f"{path} cannot be read: a passphrase-protected key needs --ssh-key-passphrase-file "
                           "(or add it to ssh-agent)") from None  # fmt: skip
        return read_key(path, getpass.getpass(f"passphrase for {path}: "))
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    return bytes(key.export_private_key())


def state_path(args: argparse.Namespace, release: Release) -> Path:
    """The local status file: --state, or next to the Release file (pure)."""
    explicit: Path | None = getattr(args, "state", None)
    if explicit is not None:
        return explicit
    source: Path = args.filename
    return source.with_name(f"{source.stem}.{release.metadata.name}.kapistrano-state.json")


def owner_of(release: Release) -> str:
    """The host-lock owner for a Release run from the command line (pure)."""
    return f"cli:{release.metadata.namespace or 'default'}/{release.metadata.name}"
