"""Options of the log commands (`kapistrano logs`, `kubectl kapistrano logs`), without heavy imports."""

from __future__ import annotations

import argparse


def add_tail_args(
    parser: argparse.ArgumentParser,
    follow: tuple[str, ...] = ("-F", "--follow"),
    lines: tuple[str, ...] = ("-n", "--lines"),
) -> None:
    """SERVICE, --hosts, the follow flag and the line count, under the flags given (changes the parser)."""
    parser.add_argument("service", metavar="SERVICE", help="log name: shared/log/SERVICE.log on each host")
    parser.add_argument("--hosts", type=host_list, help="only these hosts (comma-separated names)")
    parser.add_argument(*follow, dest="follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    parser.add_argument(*lines, dest="lines", type=int, default=10, help="lines to show from each log first (10)")


def host_list(text: str) -> list[str]:
    """Host names from `a,b,c` (pure)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no host names given")
    return names
