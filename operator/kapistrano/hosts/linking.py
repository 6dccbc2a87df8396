"""Linking shared/ into a release: linkedDirs and linkedFiles become symlinks, safely.

Like Capistrano, parents are created and anything else at a target is removed first; unlike it, a
target whose parent is a symlink or resolves outside the release is refused, so no shared or
outside file is ever removed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from kapistrano.hosts.errors import HostError, UnsafeLinkedPath
from kapistrano.hosts.runner import CommandResult, Runner
from kapistrano.hosts.shell import cmd
from kapistrano.hosts.steps import Step, run_steps

EXIT_UNSAFE_LINK = 76


def _sh(body: str, *args: str | int) -> str:
    """A script run by POSIX sh with values as $1.. (pure)."""
    return cmd("sh", "-c", body, "sh", *args)


_LINK = r"""
release=$1 shared=$2
shift 2
unsafe() { printf 'unsafe\t%s\t%s\n' "$1" "$2" >&2; exit 76; }
real=$(cd -P -- "$release" && pwd)
for item in "$@"; do
  parent=${item%/*}
  [ "$parent" = "$item" ] && parent=""
  walk=$release rest=$parent
  while [ -n "$rest" ]; do
    walk="$walk/${rest%%/*}"
    [ -L "$walk" ] && unsafe "$item" "$walk is a symlink"
    case $rest in */*) rest=${rest#*/} ;; *) rest="" ;; esac
  done
  dir=$release${parent:+/$parent}
  [ -d "$dir" ] || mkdir -p -- "$dir"
  got=$(cd -P -- "$dir" && pwd)
  [ "$got" = "$real${parent:+/$parent}" ] || unsafe "$item" "$dir resolves to $got, outside the release"
  target=$release/$item source=$shared/$item
  [ -L "$target" ] && [ "$(readlink -- "$target")" = "$source" ] && continue
  if [ -e "$target" ] || [ -L "$target" ]; then rm -rf -- "$target"; fi
  ln -s -- "$source" "$target"
done
"""


def link_shared_command(
    deploy_to: str, release_dir: str, linked_dirs: Sequence[str], linked_files: Sequence[str]
) -> str:
    """Symlink shared/<x> into the release, replacing what the source put there (pure).

    Like Capistrano, parents are created and anything else at the target is removed first; unlike
    it, a target whose parent is a symlink (an earlier linked dir, or one shipped by the source) or
    resolves outside the release is refused (exit 76), so no shared or outside file is ever removed.
    """
    body = "set -e" + _LINK
    return _sh(body, release_dir, posixpath.join(deploy_to, "shared"), *linked_dirs, *linked_files)


def parse_link_failure(host: str, exit_status: int, stderr: str) -> HostError | None:
    """The UnsafeLinkedPath a refused link reported, None for another failure (pure)."""
    for line in stderr.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "unsafe" and exit_status == EXIT_UNSAFE_LINK:
            item, _, why = rest.partition("\t")
            return UnsafeLinkedPath(host, f"linked path {item} refused: {why}")
    return None


def link_steps(deploy_to: str, release_dir: str, linked_dirs: Sequence[str], linked_files: Sequence[str]) -> list[Step]:
    """The step linking linkedDirs and linkedFiles from shared/ into a release; none without any (pure)."""
    if not linked_dirs and not linked_files:
        return []

    def failure(host: str, result: CommandResult) -> HostError | None:
        return parse_link_failure(host, result.exit_status, result.stderr)

    return [
        Step(
            "link shared into " + release_dir,
            link_shared_command(deploy_to, release_dir, linked_dirs, linked_files),
            failure,
        )
    ]


async def link_shared(
    runner: Runner, deploy_to: str, release_dir: str, linked_dirs: Sequence[str], linked_files: Sequence[str]
) -> None:
    """Link linkedDirs and linkedFiles from shared/ into a release (side effects: symlinks)."""
    await run_steps(runner, link_steps(deploy_to, release_dir, linked_dirs, linked_files))
