"""`kapistrano run`: the operator. kopf with kapistrano.k8s.handlers, against the cluster of KUBECONFIG.

kopf logs in with the kubernetes client's configuration: in-cluster credentials, else KUBECONFIG or
~/.kube/config. Without --namespace the operator serves every namespace (the same as -A).

Sharded (`--shards M` with `--shard N` or a StatefulSet pod's `--ordinal I`), the replica serves the
Releases of one shard and peers, with `--peering NAME`, with the other replicas of that shard only
(kapistrano.k8s.sharding says which Release goes where).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
from typing import Any

import kopf

from kapistrano.cli.common import add_ssh_bounds
from kapistrano.hosts import lock
from kapistrano.hosts.hub import fit_connections
from kapistrano.k8s import metrics, peers
from kapistrano.k8s.settings import OPTIONS, configure
from kapistrano.k8s.sharding import Placement, ordinal_of, placement_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the run subcommand (changes the parser)."""
    parser = subparsers.add_parser("run", help="run the operator (kopf) against the current cluster")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="serve only this namespace (repeatable; globs allowed)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace (the default)")
    parser.add_argument("--liveness", metavar="URL", help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--metrics-port", type=int, default=9090, help="Prometheus /metrics port; 0 disables it")
    parser.add_argument(
        "--forbid-insecure-host-keys",
        action="store_true",
        help="refuse every Release with spec.ssh.insecureSkipHostKeyCheck (Stalled, InsecureHostKeysForbidden)",
    )
    add_ssh_bounds(parser)
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering", metavar="NAME", help="use kopf peering NAME so that only one of several replicas is active"
    )
    peering.add_argument("--standalone", action="store_true", help="no peering (the default): run one replica only")
    add_shard_arguments(parser)
    parser.set_defaults(func=run)


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --shards, --shard, --ordinal and --rank (changes the parser)."""
    parser.add_argument("--shards", type=int, default=1, metavar="M", help="how many shards share the Releases")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--shard", type=int, metavar="N", help="serve shard N (0..M-1); default 0")
    where.add_argument(
        "--ordinal",
        type=ordinal_arg,
        metavar="I",
        help="StatefulSet pod ordinal or pod name (kapistrano-I): shard I %% M, standby rank I // M",
    )
    parser.add_argument("--rank", type=int, default=0, help="with --shard: 0 = preferred replica, 1.. = standbys")


def ordinal_arg(text: str) -> int:
    """An ordinal given as a number or as a StatefulSet pod's name (pure); raises ArgumentTypeError."""
    found = int(text) if text.isdigit() else ordinal_of(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"not an ordinal nor a StatefulSet pod name: {text!r}")
    return found


def placement_from(args: argparse.Namespace) -> Placement:
    """The shard and rank the arguments give (pure); raises ValueError for a shard out of range."""
    if args.ordinal is not None:
        return placement_of(args.ordinal, args.shards)
    return Placement(shard=args.shard or 0, shards=args.shards, rank=args.rank)


async def operate(args: argparse.Namespace, stop: asyncio.Event | None = None) -> None:
    """Run kopf with the kapistrano handlers until stopped (network I/O)."""
    importlib.import_module("kapistrano.k8s.handlers")
    OPTIONS.metrics_port = args.metrics_port
    OPTIONS.namespaces = list(args.namespace)
    OPTIONS.forbid_insecure_host_keys = args.forbid_insecure_host_keys
    OPTIONS.placement = placement_from(args)
    OPTIONS.peering = args.peering is not None
    OPTIONS.max_ssh_connections = fit_connections(args.max_ssh_connections)
    OPTIONS.ssh_concurrency = args.ssh_concurrency
    settings = kopf.OperatorSettings()
    configure(settings)
    peering = OPTIONS.placement.peering_name(args.peering) if args.peering else None
    peers.FOLLOWER = peers.PeerFollower(peering, lock.INSTANCE) if peering and not args.namespace else None
    follower = asyncio.create_task(peers.FOLLOWER.run()) if peers.FOLLOWER is not None else None
    identity: Any = lock.INSTANCE  # the peering identity is the host-lock instance: peers.py relies on it
    try:
        await kopf.operator(
            settings=settings,
            identity=identity,
            standalone=peering is None,
            peering_name=peering,
            priority=OPTIONS.placement.priority,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
            stop_flag=stop,
        )
    finally:
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


def run(args: argparse.Namespace) -> int:
    """Entry point of `kapistrano run` (runs until SIGINT/SIGTERM)."""
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger("kapistrano").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.getLogger("asyncssh").setLevel(logging.INFO if args.verbose else logging.WARNING)
    metrics.serve(args.metrics_port)
    asyncio.run(operate(args))
    return 0
