"""`kubectl kapistrano lock status|acquire|release RELEASE`: host locks by hand, with the Release's SSH Secret."""

from __future__ import annotations

import argparse
from typing import Any

from kapistrano.api.release import ReleaseFileError, parse_release
from kapistrano.cli.common import CliError, only_hosts

#: Lock actions and their help.
ACTIONS = {
    "status": "show who holds each host's lock, since when and why",
    "acquire": "lock the hosts for yourself: rollouts of any Release get Conflict there until released",
    "release": "remove the hosts' locks over SSH, after a confirmation (as `unlock`)",
}


def add_lock_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add `lock ACTION RELEASE` with --hosts/--roles, --message and --yes (changes the parser)."""
    parser = sub.add_parser("lock", help="show, take or release the Release's host locks over SSH")
    actions = parser.add_subparsers(dest="lock_action", required=True, metavar="ACTION")
    for name, text in ACTIONS.items():
        action = actions.add_parser(name, parents=[common], help=text, description=text)
        action.add_argument("--hosts", help="only these hosts, comma-separated")
        action.add_argument("--roles", help="only hosts with one of these roles, comma-separated")
        if name == "acquire":
            action.add_argument("-m", "--message", default="", help='why, e.g. "maintenance" (shown to others)')
        if name == "release":
            action.add_argument("-y", "--yes", action="store_true", help="do not ask for a confirmation")


def cmd_lock(args: argparse.Namespace, releases: Any) -> int:
    """Show, take or release the host locks of a Release read from the cluster (calls the API, SSH, reads stdin)."""
    from kapistrano.cli.locks import lock_acquire, lock_status  # noqa: PLC0415  (SSH libraries only when needed)
    from kapistrano.cli.plugin_api import PluginError  # noqa: PLC0415  (that module imports this one)
    from kapistrano.cli.unlock import cluster_credentials, unlock  # noqa: PLC0415

    obj = releases.get(args.name)
    try:
        release = only_hosts(parse_release({k: v for k, v in obj.items() if k != "status"}), args.hosts, args.roles)
        key, known = cluster_credentials(releases.api.api_client, releases.namespace, release.spec)
        spec, hosts = release.spec, list(release.spec.hosts)
        if args.lock_action == "status":
            return lock_status(spec, key, known, hosts, None)
        if args.lock_action == "acquire":
            return lock_acquire(spec, key, known, hosts, local=None, message=args.message)
        return unlock(spec, key, known, hosts, args.yes)
    except ReleaseFileError as exc:
        raise PluginError("the Release does not validate: " + "; ".join(exc.problems)) from None
    except (CliError, ValueError) as exc:
        raise PluginError(str(exc)) from None
