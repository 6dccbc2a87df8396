"""Capistrano's directory layout on deployTo: releases/, shared/, current, revisions.log, repo/.

Each operation is split pyinfra-style: a pure `*_command()` that builds the remote command line (all
values quoted by kapistrano.hosts.shell), a pure `parse_*()` that reads its output, and an async
function that runs the one through a Runner and applies the other. Scripts always run under `sh -c`
so the login shell of the deploy user does not matter.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from kapistrano.hosts.errors import CommandFailed
from kapistrano.hosts.linking import EXIT_UNSAFE_LINK, link_shared, link_shared_command, link_steps, parse_link_failure
from kapistrano.hosts.lock import LockOutcome, acquire_lock, release_lock
from kapistrano.hosts.prepare import (
    EXIT_LINKED_FILE_MISSING,
    EXIT_NOT_WRITABLE,
    parse_prepare_failure,
    prepare,
    prepare_command,
)
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import cmd, quote, section, split_sections
from kapistrano.hosts.steps import Step, run_steps

__all__ = [
    "EXIT_LINKED_FILE_MISSING",
    "EXIT_NOT_WRITABLE",
    "EXIT_UNSAFE_LINK",
    "LockOutcome",
    "acquire_lock",
    "link_shared",
    "link_shared_command",
    "link_steps",
    "parse_link_failure",
    "parse_prepare_failure",
    "prepare",
    "prepare_command",
    "release_lock",
]

RELEASE_FORMAT = "%Y%m%d%H%M%S"
RELEASE_NAME = re.compile(r"^\d{14}$")
VERSION_MARKER = ".kapistrano-version"
REVISION_FILE = "REVISION"
EXIT_NO_SUCH_RELEASE = 75
#: rm -rf takes this many release directories per command line, as Capistrano does.
REMOVE_BATCH = 100


@dataclass(frozen=True)
class Paths:
    """Where things live under one deployTo (pure)."""

    deploy_to: str

    @property
    def releases(self) -> str:
        """releases/ (pure)."""
        return posixpath.join(self.deploy_to, "releases")

    @property
    def shared(self) -> str:
        """shared/ (pure)."""
        return posixpath.join(self.deploy_to, "shared")

    @property
    def current(self) -> str:
        """The current symlink (pure)."""
        return posixpath.join(self.deploy_to, "current")

    @property
    def repo(self) -> str:
        """The git mirror, as Capistrano's git strategy keeps it (pure)."""
        return posixpath.join(self.deploy_to, "repo")

    @property
    def revisions_log(self) -> str:
        """revisions.log (pure)."""
        return posixpath.join(self.deploy_to, "revisions.log")

    def release(self, name: str) -> str:
        """releases/<name>; rejects names that are not one plain path segment (pure)."""
        if not name or "/" in name or name in (".", "..") or "\n" in name:
            raise ValueError(f"not a release name: {name!r}")
        return posixpath.join(self.releases, name)


def _sh(body: str, *args: str | int) -> str:
    """A script run by POSIX sh with values as $1.. (pure)."""
    return cmd("sh", "-c", body, "sh", *args)


def _fail(result_status: int, stderr: str, host: str, command: str) -> CommandFailed:
    """The CommandFailed for an unexpected exit status (pure)."""
    return CommandFailed(host, command, result_status, stderr)


# -- release names and directories -------------------------------------------------------------------


def new_release_name(now: datetime, existing: Iterable[str]) -> str:
    """A fresh UTC YYYYmmddHHMMSS name, later than every existing release name (pure).

    A clash (or a release dir from a clock running ahead) bumps the name past the newest one by a
    second, so names stay unique and sort in deploy order, which cleanup relies on.
    """
    moment = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
    names = [n for n in existing if RELEASE_NAME.fullmatch(n)]
    if names:
        newest = datetime.strptime(max(names), RELEASE_FORMAT).replace(tzinfo=UTC)
        moment = max(moment, newest + timedelta(seconds=1))
    return moment.strftime(RELEASE_FORMAT)


_LIST = 'cd -- "$1" 2>/dev/null || exit 0\nfor d in */; do [ -d "$d" ] && printf "%s\\n" "${d%/}"; done; exit 0'


def list_releases_command(deploy_to: str) -> str:
    """List release directory names, one a line (pure)."""
    return _sh(_LIST, Paths(deploy_to).releases)


def parse_releases(stdout: str) -> list[str]:
    """Release names sorted oldest first (pure)."""
    return sorted({line for line in stdout.splitlines() if line})


async def list_releases(runner: Runner, deploy_to: str) -> list[str]:
    """Names of every directory in releases/, oldest first (side effects: none)."""
    return parse_releases((await runner.run(list_releases_command(deploy_to))).stdout)


def create_step(release_dir: str) -> Step:
    """Create a release directory, which must not exist yet (pure)."""
    return Step("create", cmd("mkdir", "--", release_dir))


async def create_release(runner: Runner, deploy_to: str, name: str) -> str:
    """Create releases/<name> (must not exist yet) and return its path (side effect: a directory)."""
    path = Paths(deploy_to).release(name)
    await run_steps(runner, [create_step(path)])
    return path


async def remove_release(runner: Runner, deploy_to: str, name: str) -> None:
    """Delete releases/<name> (side effect: removes a directory)."""
    await runner.run(cmd("rm", "-rf", "--", Paths(deploy_to).release(name)))


# -- linking and markers -----------------------------------------------------------------------------


def write_revision_command(release_dir: str, revision: str) -> str:
    """Write REVISION into a release (pure)."""
    return _sh('printf "%s\\n" "$2" > "$1/REVISION"', release_dir, revision)


def mark_complete_command(release_dir: str, version: str) -> str:
    """Write .kapistrano-version into a release (pure)."""
    return _sh('printf "%s\\n" "$2" > "$1/.kapistrano-version"', release_dir, version)


def revision_step(release_dir: str, revision: str) -> Step:
    """Record the release's revision, as Capistrano does before its `deploy:updated` hooks (pure)."""
    return Step("write REVISION", write_revision_command(release_dir, revision))


def complete_step(release_dir: str, version: str) -> Step:
    """Record the release's version; written last, so this marker means complete (pure)."""
    return Step("mark complete", mark_complete_command(release_dir, version))


async def write_revision(runner: Runner, release_dir: str, revision: str) -> None:
    """Record the release's revision (side effect: a file)."""
    await run_steps(runner, [revision_step(release_dir, revision)])


async def mark_complete(runner: Runner, release_dir: str, version: str) -> None:
    """Record the release's version, which makes it complete (side effect: a file)."""
    await run_steps(runner, [complete_step(release_dir, version)])


# -- reading releases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseInfo:
    """A release directory with its markers."""

    name: str
    version: str | None
    revision: str | None


_MARKERS = r"""
cd -- "$1" 2>/dev/null || exit 0
for d in */; do
  [ -f "$d.kapistrano-version" ] || continue
  rev="" ver=""
  [ -f "${d}REVISION" ] && { IFS= read -r rev || :; } < "${d}REVISION"
  { IFS= read -r ver || :; } < "$d.kapistrano-version"
  printf '%s\t%s\t%s\n' "${d%/}" "$ver" "$rev"
done
exit 0
"""


def release_markers_command(deploy_to: str) -> str:
    """Print name, version and revision of every release with a version marker, in ONE command (pure)."""
    return _sh(_MARKERS, Paths(deploy_to).releases)


def parse_release_markers(stdout: str) -> list[ReleaseInfo]:
    """ReleaseInfo per output line, oldest first; versions may contain tabs (pure)."""
    infos = []
    for line in stdout.splitlines():
        name, sep, rest = line.partition("\t")
        if not sep:
            continue
        version, _, revision = rest.rpartition("\t")
        infos.append(ReleaseInfo(name, version, revision or None))
    return sorted(infos, key=lambda info: info.name)


def pick_release_for_version(infos: Iterable[ReleaseInfo], version: str) -> ReleaseInfo | None:
    """The newest release whose marker holds `version` (pure)."""
    matches = [info for info in infos if info.version == version]
    return max(matches, key=lambda info: info.name) if matches else None


async def find_release_for_version(runner: Runner, deploy_to: str, version: str) -> ReleaseInfo | None:
    """The newest complete release of `version` on the host, if any (side effects: none)."""
    result = await runner.run(release_markers_command(deploy_to))
    return pick_release_for_version(parse_release_markers(result.stdout), version)


@dataclass(frozen=True)
class CurrentRelease:
    """Where `current` points. version is None for a release made by Capistrano (no marker)."""

    release: str
    version: str | None
    revision: str | None
    target: str
    exists: bool


_CURRENT = r"""
[ -L "$1" ] || exit 0
printf 'target\t%s\n' "$(readlink -- "$1")"
[ -d "$1" ] && printf 'exists\tyes\n'
first() { l=; [ -f "$1" ] && { IFS= read -r l || :; } < "$1"; }
first "$1/.kapistrano-version" && printf 'version\t%s\n' "$l"
first "$1/REVISION" && printf 'revision\t%s\n' "$l"
exit 0
"""


def read_current_command(deploy_to: str) -> str:
    """Print current's target, markers and whether it resolves, in ONE command (pure)."""
    return _sh(_CURRENT, Paths(deploy_to).current)


def parse_current(stdout: str) -> CurrentRelease | None:
    """The CurrentRelease described by read_current's output; None when there is no current (pure)."""
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("\t")
        if sep and key not in fields:
            fields[key] = value
    target = fields.get("target")
    if not target:
        return None
    name = PurePosixPath(target.rstrip("/") or "/").name
    return CurrentRelease(
        release=name,
        version=fields.get("version"),
        revision=fields.get("revision") or None,
        target=target,
        exists=fields.get("exists") == "yes",
    )


async def read_current(runner: Runner, deploy_to: str) -> CurrentRelease | None:
    """Which release `current` points to, with its markers (side effects: none)."""
    return parse_current((await runner.run(read_current_command(deploy_to))).stdout)


# -- publishing, revision log, cleanup ---------------------------------------------------------------

_PUBLISH = r"""
[ -d "$1" ] || { printf 'no such release: %s\n' "$1" >&2; exit 75; }
ln -sfn -- "$1" "$2"
mv -fT -- "$2" "$3"
"""


def publish_command(deploy_to: str, release: str, suffix: str) -> str:
    """Point current at a release atomically: symlink to a temp name, rename over current (pure).

    The link target is absolute, as Capistrano writes it, so `cap deploy:cleanup` and other
    Capistrano tasks keep recognising the current release.
    """
    paths = Paths(deploy_to)
    temp = posixpath.join(deploy_to, f"current_tmp_{suffix}")
    return _sh("set -e" + _PUBLISH, paths.release(release), temp, paths.current)


async def publish(runner: Runner, deploy_to: str, release: str) -> None:
    """Switch `current` to releases/<release> atomically (side effect: the current symlink)."""
    result = await runner.run(publish_command(deploy_to, release, secrets.token_hex(6)), check=False)
    if not result.ok:
        raise CommandFailed(runner.name, f"publish {release}", result.exit_status, result.stderr)


def deploy_log_line(branch: str, sha: str, release: str, user: str) -> str:
    """Capistrano's revision_log_message (pure)."""
    return _one_line(f"Branch {branch} (at {sha}) deployed as release {release} by {user}")


def rollback_log_line(user: str, release: str) -> str:
    """Capistrano's rollback_log_message (pure)."""
    return _one_line(f"{user} rolled back to release {release}")


def _one_line(text: str) -> str:
    """Newlines flattened so one message stays one log line (pure)."""
    return " ".join(text.splitlines())


_DEPLOY_LINE = re.compile(
    r"^Branch (?P<branch>.*) \(at (?P<sha>.*)\) deployed as release (?P<release>\S+) by (?P<user>.*)$"
)
_ROLLBACK_LINE = re.compile(r"^(?P<user>.*) rolled back to release (?P<release>\S+)$")


def parse_revision_log_line(line: str) -> dict[str, str] | None:
    """The fields of one revisions.log line (kind deploy or rollback), None if unrecognised (pure)."""
    for kind, pattern in (("deploy", _DEPLOY_LINE), ("rollback", _ROLLBACK_LINE)):
        match = pattern.match(line.rstrip("\n"))
        if match:
            return {"kind": kind, **match.groupdict()}
    return None


def append_revision_log_command(deploy_to: str, message: str) -> str:
    """Append one line to revisions.log, like Capistrano's `echo MESSAGE >> revisions.log` (pure)."""
    return _sh('printf "%s\\n" "$1" >> "$2"', _one_line(message), Paths(deploy_to).revisions_log)


async def append_revision_log(runner: Runner, deploy_to: str, message: str) -> None:
    """Append a line to revisions.log (side effect: the log file)."""
    await runner.run(append_revision_log_command(deploy_to, message))


def previous_release(releases: Iterable[str], current: str | None) -> str | None:
    """The release before `current` by name (pure)."""
    if current is None:
        return None
    older = [n for n in releases if RELEASE_NAME.fullmatch(n) and n < current]
    return max(older) if older else None


def select_for_cleanup(
    releases: Iterable[str], keep: int, current: str | None, in_use: Iterable[str] = ()
) -> list[str]:
    """The oldest releases beyond `keep`, never current, the one before it, nor one a process runs from (pure).

    Only Capistrano-style names (14 digits) are considered, as `cap deploy:cleanup` does.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    valid = sorted({n for n in releases if RELEASE_NAME.fullmatch(n)})
    protected = {current, previous_release(valid, current), *in_use}
    return [n for n in valid[: max(0, len(valid) - keep)] if n not in protected]


# Compared by device and inode, not by path: a process in another mount namespace may show the same path.
_IN_USE = r"""
cd -- "$1" 2>/dev/null || exit 0
used=$(stat -L -c '%d:%i' /proc/[0-9]*/cwd 2>/dev/null | sort -u)
for d in */; do
  id=$(stat -L -c '%d:%i' -- "$d" 2>/dev/null) || continue
  printf '%s\n' "$used" | grep -qxF -- "$id" && printf '%s\n' "${d%/}"
done
exit 0
"""


def cleanup_listing_command(deploy_to: str, log_line: str | None = None) -> str:
    """List releases, current and the releases in use in ONE command; `log_line` is appended to revisions.log (pure).

    The append reports `logged` in its own section, so a failed append does not stop the listing.
    """
    paths = Paths(deploy_to)
    lines = []
    if log_line is not None:
        append = cmd("printf", "%s\\n", _one_line(log_line)) + " >> " + quote(paths.revisions_log)
        lines += ["echo == log", f"{append} 2>/dev/null && echo logged"]
    lines += [*section("releases", _LIST, paths.releases), *section("current", _CURRENT, paths.current)]
    lines += [*section("in-use", _IN_USE, paths.releases), "true"]
    return cmd("sh", "-c", "\n".join(lines))


@dataclass(frozen=True)
class Listing:
    """What cleanup_listing_command found."""

    releases: list[str]
    current: CurrentRelease | None
    in_use: set[str]
    logged: bool


def parse_cleanup_listing(stdout: str) -> Listing:
    """The Listing cleanup_listing_command's output describes (pure)."""
    sections = split_sections(stdout)
    in_use = {line for line in sections.get("in-use", "").splitlines() if RELEASE_NAME.fullmatch(line)}
    return Listing(
        parse_releases(sections.get("releases", "")),
        parse_current(sections.get("current", "")),
        in_use,
        sections.get("log", "").strip() == "logged",
    )


async def cleanup(runner: Runner, deploy_to: str, keep: int) -> list[str]:
    """Delete releases beyond `keep` that no process runs from, and their hook logs; returns the names removed.

    Side effect: removes directories and files.
    """
    return (await keep_books(runner, deploy_to, keep, None)).releases


async def keep_books(runner: Runner, deploy_to: str, keep: int, log_line: str | None) -> Listing:
    """Append `log_line` to revisions.log and clean up, in one round trip (two when releases go).

    The Listing's releases are those removed. Side effect: removes directories and files, appends to the log.
    """
    found = parse_cleanup_listing((await runner.run(cleanup_listing_command(deploy_to, log_line))).stdout)
    doomed = select_for_cleanup(found.releases, keep, found.current.release if found.current else None, found.in_use)
    paths = Paths(deploy_to)
    for start in range(0, len(doomed), REMOVE_BATCH):
        batch = doomed[start : start + REMOVE_BATCH]
        # shared/log/hooks/<release>-<hook>.log: the quoted name, then an unquoted glob.
        logs = " ".join(quote(posixpath.join(paths.shared, "log", "hooks", n)) + "-*.log" for n in batch)
        await runner.run(cmd("rm", "-rf", "--", *(paths.release(n) for n in batch)) + " && rm -f -- " + logs)
    return replace(found, releases=doomed)
