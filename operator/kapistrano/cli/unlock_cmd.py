"""`kapistrano unlock -f release.yaml`: remove the Release's host locks by hand, after a confirmation."""

from __future__ import annotations

import argparse
import sys

from kapistrano.cli.common import CliError, add_release_args, load_credentials, pick_release
from kapistrano.cli.unlock import selected, unlock


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the unlock subcommand (changes the parser)."""
    parser = subparsers.add_parser(
        "unlock",
        help="remove host locks left by a process that is gone (also `kapistrano lock release`)",
        description="Show who holds each host's lock (<deployTo>/.kapistrano.lock) and, once confirmed, remove "
        "them. Only for a lock whose holder is gone for good: a lock expires by itself.",
    )
    add_release_args(parser)
    parser.add_argument("--host", action="append", metavar="NAME", help="only this host (repeatable)")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for a confirmation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano unlock` (network I/O, reads stdin)."""
    try:
        release = pick_release(args.filename, args.name)
        hosts = selected(release.spec, args.host)
        creds = load_credentials(args, release)
    except (CliError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return unlock(release.spec, creds.private_key, creds.known_hosts, hosts, args.yes, local=creds.local)
