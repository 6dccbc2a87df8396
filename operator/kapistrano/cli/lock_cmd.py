"""`kapistrano lock status|acquire|release -f release.yaml`: host locks by hand, as `kamal lock` has them."""

from __future__ import annotations

import argparse
import sys

from kapistrano.cli.common import CliError, add_release_args, load_credentials, release_for
from kapistrano.cli.locks import lock_acquire, lock_status
from kapistrano.cli.unlock import unlock

_HELP = {
    "status": "show who holds each host's lock, since when and why",
    "acquire": "lock the hosts for yourself (manual:<user>@<machine>): rollouts get Conflict there until released",
    "release": "remove the hosts' locks, after a confirmation (the same as `kapistrano unlock`)",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the lock subcommand and its status/acquire/release actions (changes the parser)."""
    parser = subparsers.add_parser(
        "lock",
        help="show, take or release host locks by hand",
        description="Host locks (<deployTo>/.kapistrano.lock) by hand. A lock taken with `acquire` keeps every "
        "rollout, of any Release, off the host (Conflict, with the message) until `release`.",
    )
    actions = parser.add_subparsers(dest="lock_action", required=True, metavar="ACTION")
    for name, text in _HELP.items():
        action = actions.add_parser(name, help=text, description=text)
        add_release_args(action)
        if name == "acquire":
            action.add_argument("-m", "--message", default="", help='why, e.g. "maintenance" (shown to others)')
        if name == "release":
            action.add_argument("-y", "--yes", action="store_true", help="do not ask for a confirmation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano lock ACTION` (network I/O, reads stdin for release)."""
    try:
        release = release_for(args)
        creds = load_credentials(args, release)
    except CliError as exc:
        print(exc, file=sys.stderr)
        return 1
    spec, hosts = release.spec, list(release.spec.hosts)
    key, known, local = creds.private_key, creds.known_hosts, creds.local
    if args.lock_action == "status":
        return lock_status(spec, key, known, hosts, local)
    if args.lock_action == "acquire":
        try:
            return lock_acquire(spec, key, known, hosts, local=local, message=args.message)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return unlock(spec, key, known, hosts, args.yes, local=local)
