"""The `kapistrano` command: each subcommand lives in its own module under kapistrano.cli."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

#: Subcommand name -> module under kapistrano.cli that defines `register(subparsers)`.
#: A module's register() adds its parser and sets `func` (args -> exit code) as a default.
SUBCOMMANDS = ("crd", "validate", "apply", "plan", "status", "demo", "run")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand (imports the subcommand modules)."""
    parser = argparse.ArgumentParser(
        prog="kapistrano", description="Capistrano-style deploys with safe rolling restarts."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
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
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
