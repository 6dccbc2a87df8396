"""`kapistrano logs SERVICE -f release.yaml`: tail shared/log/<service>.log on every host, lines prefixed by host."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from kapistrano.api.release import Release
from kapistrano.api.spec import Host
from kapistrano.cli.common import CliError, Credentials, add_release_args, load_credentials, pick_release
from kapistrano.cli.tail_args import add_tail_args
from kapistrano.hosts.logs import TailRequest, log_file, tail_hosts
from kapistrano.hosts.ssh import SshConnection, target_for_host


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the logs subcommand (changes the parser)."""
    parser = subparsers.add_parser(
        "logs", help="tail a service's log on every host, lines prefixed by host", conflict_handler="resolve"
    )
    add_release_args(parser)
    add_tail_args(parser)  # last: its --hosts is the one that counts here
    parser.set_defaults(func=run)


def chosen_hosts(release: Release, names: Sequence[str] | None) -> list[Host]:
    """The Release's hosts, or those named, in spec order; raises CliError for an unknown name (pure)."""
    hosts = release.spec.hosts
    if names is None:
        return list(hosts)
    unknown = sorted(set(names) - {h.name for h in hosts})
    if unknown:
        raise CliError(f"no such host in {release.metadata.name}: {', '.join(unknown)}")
    return [h for h in hosts if h.name in names]


async def tail_release(release: Release, hosts: Sequence[Host], request: TailRequest, creds: Credentials) -> bool:
    """Tail a log on the hosts until it ends or the task is cancelled (network I/O, prints lines)."""
    width = max(len(h.name) for h in hosts)
    spec = release.spec
    conns = [SshConnection(target_for_host(spec, h, creds.private_key, creds.known_hosts, creds.local)) for h in hosts]

    def line(host: str, text: str) -> None:
        print(f"{host:<{width}} | {text}", flush=True)

    def error(host: str, message: str) -> None:
        print(f"{host:<{width}} ! {message}", file=sys.stderr, flush=True)

    try:
        return await tail_hosts(conns, request, line, error)
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def until_signalled(work: Coroutine[Any, Any, bool]) -> bool:
    """Await `work`; SIGTERM or SIGINT cancel it and count as a normal end (side effect: signal handlers)."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(work)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            return await task
        return True
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano logs` (network I/O)."""
    try:
        release = pick_release(args.filename, args.name)
        hosts, request = tail_plan(release, args)
        creds = load_credentials(args, release)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    work = tail_release(release, hosts, request, creds)
    return 0 if asyncio.run(until_signalled(work)) else 1


def tail_plan(release: Release, args: argparse.Namespace) -> tuple[list[Host], TailRequest]:
    """The hosts and the tail the options ask for; raises CliError (pure)."""
    request = TailRequest(release.spec.deploy_path, args.service, args.lines, args.follow)
    try:
        log_file(request.deploy_to, request.service)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return chosen_hosts(release, args.hosts), request
