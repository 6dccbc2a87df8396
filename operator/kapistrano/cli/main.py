"""The `kapistrano` command: each subcommand lives in its own module under kapistrano.cli."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

#: Subcommand name -> module under kapistrano.cli that defines `register(subparsers)`.
#: A module's register() adds its parser and sets `func` (args -> exit code) as a default.
SUBCOMMANDS = ("crd", "validate", "apply", "plan", "status", "logs", "lock", "unlock", "demo", "run")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand, or only `only` (imports those subcommand modules).

    Importing just the subcommand that runs keeps `kapistrano apply` from loading kopf and the
    Kubernetes client, which only `run` needs (about a second of start-up).
    """
    parser = argparse.ArgumentParser(
        prog="kapistrano", description="Capistrano-style deploys with safe rolling restarts."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"kapistrano.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"kapistrano.cli.{name}_cmd":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kapistrano` console script."""
    words = list(sys.argv[1:] if argv is None else argv)
    only = words[0] if words and words[0] in SUBCOMMANDS else None
    args = build_parser(only).parse_args(words)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
