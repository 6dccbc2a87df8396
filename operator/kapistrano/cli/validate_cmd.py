"""`kapistrano validate -f FILE`: check every Release in a file offline, with the operator's own models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kapistrano.api import yamlfile
from kapistrano.api.release import KIND, Release, ReleaseFileError, parse_release
from kapistrano.api.spec import SOURCE_KINDS, ReleaseSpec
from kapistrano.plan.conditions import INSECURE_HOST_KEYS_MESSAGE


def _plural(count: int, noun: str) -> str:
    """'1 host', '3 hosts' (pure)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _label(document: Any, index: int) -> str:
    """How a document is named in messages: namespace/name, or its position in the file (pure)."""
    meta = document.get("metadata") if isinstance(document, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        return f"document {index + 1}"
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name


def summary(release: Release, label: str) -> str:
    """The one-line summary of a valid Release (pure)."""
    spec = release.spec
    source = next(kind for kind in SOURCE_KINDS if getattr(spec.source, kind) is not None)
    return (
        f"release {label}: valid ({_plural(len(spec.hosts), 'host')}, "
        f"{_plural(len(spec.services), 'service')}, source {source})"
    )


def restart_lines(spec: ReleaseSpec) -> list[str]:
    """How each pidfile service will be restarted, with a warning where a setting costs time (pure)."""
    lines = []
    for service in spec.services:
        block = service.pidfile
        if block is None:
            continue
        quiet = f"{block.quiet_signal}, " if block.quiet_signal else ""
        until = " until drained" if block.drained else f" for up to {block.quiet_timeout_seconds}s" if quiet else ""
        lines.append(
            f"{service.name}: {_plural(service.instances, 'instance')} per host, {block.instance_policy}, "
            f"{block.replace}, {quiet}{until.strip() + ', ' if until else ''}then {block.stop_signal}"
        )
        if block.quiet_signal and block.drained is None:
            lines.append(
                f"warning: {service.name}: quietSignal without a drained check: every stop waits "
                f"quietTimeoutSeconds ({block.quiet_timeout_seconds}s) unless the worker exits by itself"
            )
    return lines


def warnings_of(release: Release, label: str) -> list[str]:
    """Lines about valid but unsafe settings (pure)."""
    if release.spec.ssh.insecure_skip_host_key_check:
        return [f"release {label}: warning: {INSECURE_HOST_KEYS_MESSAGE}"]
    return []


def check_documents(documents: list[Any], path: Path) -> tuple[list[str], list[str], list[str]]:
    """Validate each Release document (pure); returns (summaries, problems, warnings), one line each."""
    summaries: list[str] = []
    problems: list[str] = []
    warnings: list[str] = []
    releases = [(i, d) for i, d in enumerate(documents) if isinstance(d, dict) and d.get("kind") == KIND]
    if not releases:
        return [], [f"{path}: no document of kind {KIND}"], []
    for index, document in releases:
        label = _label(document, index)
        try:
            release = parse_release(document)
        except ReleaseFileError as exc:
            problems.extend(f"release {label}: {line}" for line in exc.problems)
            continue
        summaries.append(summary(release, label))
        summaries.extend(f"  {line}" for line in restart_lines(release.spec))
        warnings.extend(warnings_of(release, label))
    return summaries, problems, warnings


def check_file(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Validate every Release in a file (reads the file); returns (summaries, problems, warnings)."""
    try:
        documents = yamlfile.read_documents(path)
    except yamlfile.DocumentError as exc:
        return [], [str(exc)], []
    return check_documents(documents, path)


def run(args: argparse.Namespace) -> int:
    """Check each file, print summaries to stdout, problems and warnings to stderr (side effects); 0 if all valid."""
    failed = False
    for filename in args.filename:
        summaries, problems, warnings = check_file(Path(filename))
        for line in summaries:
            print(line)
        for line in problems + warnings:
            print(line, file=sys.stderr)
        failed = failed or bool(problems)
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    """Add the `validate` subcommand to the parser (side effect: mutates subparsers)."""
    parser = subparsers.add_parser(
        "validate",
        help="check Release files offline",
        description="Check every Release in the given files with the operator's models; no cluster needed. "
        "Exits 1 and prints one line per problem (with its field path) when any Release is invalid.",
    )
    parser.add_argument(
        "-f", "--filename", action="append", required=True, metavar="FILE", help="a YAML file (repeatable)"
    )
    parser.set_defaults(func=run)
