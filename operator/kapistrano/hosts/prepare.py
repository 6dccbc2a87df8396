"""Preparing deployTo the Capistrano way: releases/, shared/, linked dirs, parents of linked files.

A pure `prepare_command()` builds the one remote script (values quoted), a pure
`parse_prepare_failure()` reads what a failed run reported, and `prepare` runs them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from kapistrano.hosts.errors import CommandFailed, HostError, LinkedFileMissing, NotWritable
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import cmd

EXIT_NOT_WRITABLE = 73
EXIT_LINKED_FILE_MISSING = 74

_PREPARE = r"""
nw() { printf 'not-writable\t%s\t%s\n' "$1" "$2" >&2; clean; exit 73; }
t=.kapistrano-write-check.$$
clean() { rm -f -- "$DEPLOY/$t" "$DEPLOY/releases/$t" "$DEPLOY/shared/$t"; }
for d in "$@"; do
  case $d in
    --files) break ;;
  esac
  [ -d "$d" ] && continue
  err=$(mkdir -p -- "$d" 2>&1) || nw "$d" "$err"
done
for d in "$DEPLOY" "$DEPLOY/releases" "$DEPLOY/shared"; do
  err=$( { true > "$d/$t"; } 2>&1) || nw "$d" "$err"
done
clean
files=no
for f in "$@"; do
  if [ "$files" = yes ] && [ ! -e "$f" ]; then printf 'missing\t%s\n' "$f" >&2; exit 74; fi
  [ "$f" = --files ] && files=yes
done
exit 0
"""


def prepare_command(deploy_to: str, linked_dirs: Sequence[str], linked_files: Sequence[str]) -> str:
    """Create releases/, shared/, linked dirs and parents of linked files; check writability (pure)."""
    shared = posixpath.join(deploy_to, "shared")
    dirs = [deploy_to, posixpath.join(deploy_to, "releases"), shared]
    dirs += [posixpath.join(shared, d) for d in linked_dirs]
    dirs += [posixpath.dirname(posixpath.join(shared, f)) for f in linked_files]
    files = [posixpath.join(shared, f) for f in linked_files]
    unique = list(dict.fromkeys(dirs))
    return cmd("env", f"DEPLOY={deploy_to}", "sh", "-c", _PREPARE, "sh", *unique, "--files", *files)


def parse_prepare_failure(host: str, exit_status: int, stderr: str) -> HostError | None:
    """The error a failed prepare reported, None for an unrecognised failure (pure)."""
    for line in stderr.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "not-writable" and exit_status == EXIT_NOT_WRITABLE:
            path, _, detail = rest.partition("\t")
            return NotWritable(host, path, detail.strip())
        if kind == "missing" and exit_status == EXIT_LINKED_FILE_MISSING:
            return LinkedFileMissing(host, f"linked file {rest} does not exist (create it in shared/ first)")
    return None


async def prepare(runner: Runner, deploy_to: str, linked_dirs: Sequence[str], linked_files: Sequence[str]) -> None:
    """Create the layout and check deployTo is writable (side effects: directories on the host)."""
    command = prepare_command(deploy_to, linked_dirs, linked_files)
    result = await runner.run(command, check=False)
    if result.ok:
        return
    error = parse_prepare_failure(runner.name, result.exit_status, result.stderr)
    raise error or CommandFailed(runner.name, "prepare " + deploy_to, result.exit_status, result.stderr)
