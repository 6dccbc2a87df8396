"""`kapistrano run`: the operator. kopf with kapistrano.k8s.handlers, against the cluster of KUBECONFIG.

kopf logs in with the kubernetes client's configuration: in-cluster credentials, else KUBECONFIG or
~/.kube/config. Without --namespace the operator serves every namespace (the same as -A).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging

import kopf

from kapistrano.cli.common import add_ssh_bounds
from kapistrano.k8s import metrics
from kapistrano.k8s.settings import OPTIONS


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
    parser.set_defaults(func=run)


async def operate(args: argparse.Namespace, stop: asyncio.Event | None = None) -> None:
    """Run kopf with the kapistrano handlers until stopped (network I/O)."""
    importlib.import_module("kapistrano.k8s.handlers")
    OPTIONS.metrics_port = args.metrics_port
    OPTIONS.namespaces = list(args.namespace)
    OPTIONS.forbid_insecure_host_keys = args.forbid_insecure_host_keys
    OPTIONS.max_ssh_connections = args.max_ssh_connections
    OPTIONS.ssh_concurrency = args.ssh_concurrency
    await kopf.operator(
        standalone=args.peering is None,
        peering_name=args.peering,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        stop_flag=stop,
    )


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
