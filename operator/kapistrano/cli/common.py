"""Pieces the offline subcommands share: loading a Release file, SSH credentials, the state file."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from kapistrano.api.release import Release, ReleaseFileError, load_releases


class CliError(Exception):
    """A problem to print as one line and exit 1 with."""


@dataclass(frozen=True)
class Credentials:
    """Client key and known_hosts for SSH, read from files."""

    private_key: bytes = field(repr=False)
    known_hosts: bytes | None = field(repr=False)


def add_release_args(parser: argparse.ArgumentParser) -> None:
    """The -f/--name/--ssh-key/--known-hosts options of apply, plan and status (changes the parser)."""
    parser.add_argument("-f", "--filename", required=True, type=Path, help="YAML file with a Release")
    parser.add_argument("--name", help="which Release of the file, when it holds several")
    parser.add_argument("--ssh-key", type=Path, help="private key file (default: ~/.ssh/id_ed25519, then id_rsa)")
    parser.add_argument("--known-hosts", type=Path, help="known_hosts file (default: ~/.ssh/known_hosts)")


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


def _first_existing(*paths: Path) -> Path | None:
    """The first path that exists (reads the filesystem)."""
    return next((p for p in paths if p.exists()), None)


def load_credentials(args: argparse.Namespace, release: Release) -> Credentials:
    """Read the client key and known_hosts named on the command line or found in ~/.ssh (reads files)."""
    home = Path(os.path.expanduser("~")) / ".ssh"
    key_path = args.ssh_key or _first_existing(home / "id_ed25519", home / "id_rsa")
    if key_path is None or not key_path.exists():
        raise CliError("no SSH private key: pass --ssh-key FILE")
    known = args.known_hosts or _first_existing(home / "known_hosts")
    if known is None and not release.spec.ssh.insecure_skip_host_key_check:
        raise CliError("no known_hosts: pass --known-hosts FILE (or set spec.ssh.insecureSkipHostKeyCheck)")
    return Credentials(key_path.read_bytes(), known.read_bytes() if known else None)


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
