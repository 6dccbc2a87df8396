"""`kapistrano crd`: print the Release CustomResourceDefinition generated from the models."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kapistrano.api.crd import render_crd


def run(args: argparse.Namespace) -> int:
    """Write the CRD YAML to stdout (side effect: prints); returns the exit code."""
    sys.stdout.write(render_crd())
    return 0


def register(subparsers: Any) -> None:
    """Add the `crd` subcommand to the parser (side effect: mutates subparsers)."""
    parser = subparsers.add_parser(
        "crd",
        help="print the Release CustomResourceDefinition",
        description="Print the Release CRD generated from the API models (kubectl apply -f - to install it).",
    )
    parser.set_defaults(func=run)
