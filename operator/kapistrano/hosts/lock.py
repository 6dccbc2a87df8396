"""The host lock `<deployTo>/.kapistrano.lock`: which Release is deploying there, until when.

The file holds two lines: the owner (a Release uid) and the expiry (Unix seconds). Reading and
rewriting it happens under `flock` on the deployTo directory itself (a directory is never replaced,
unlike a lock file), so two operators racing for the same host cannot both win. The file is replaced
with a rename, so a reader never sees half of it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime

from kapistrano.hosts.errors import CommandFailed, LockConflict
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import cmd

LOCK_FILE = ".kapistrano.lock"
#: How long to wait for another operator's read-modify-write of the lock file (milliseconds of work).
FLOCK_WAIT_SECONDS = 10

_ACQUIRE = r"""
set -e
lock=$1 owner=$2 now=$3 expires=$4
prev_owner="" prev_expires=""
if [ -f "$lock" ]; then
  prev_owner=$(sed -n 1p -- "$lock")
  prev_expires=$(sed -n 2p -- "$lock")
  if [ "$prev_owner" != "$owner" ] && [ "$prev_expires" -gt "$now" ] 2>/dev/null; then
    printf 'held\t%s\t%s\n' "$prev_expires" "$prev_owner"
    exit 0
  fi
fi
tmp="$lock.tmp.$$"
printf '%s\n%s\n' "$owner" "$expires" > "$tmp"
mv -f -- "$tmp" "$lock"
printf 'acquired\t%s\t%s\n' "$prev_expires" "$prev_owner"
"""

_RELEASE = r"""
set -e
lock=$1 owner=$2
[ -f "$lock" ] || { echo absent; exit 0; }
holder=$(sed -n 1p -- "$lock")
if [ "$holder" = "$owner" ]; then rm -f -- "$lock"; echo released; else printf 'other\t%s\n' "$holder"; fi
"""


@dataclass(frozen=True)
class LockOutcome:
    """What acquiring the lock found: who held it before (if anyone) and whether we have it now."""

    acquired: bool
    holder: str
    expires: int | None
    previous_owner: str | None
    previous_expires: int | None

    @property
    def taken_over(self) -> bool:
        """True when we replaced another owner's expired lock (pure)."""
        return self.acquired and self.previous_owner not in (None, self.holder)


def lock_path(deploy_to: str) -> str:
    """<deployTo>/.kapistrano.lock (pure)."""
    return posixpath.join(deploy_to, LOCK_FILE)


def _check_owner(owner: str) -> None:
    """Reject owners that cannot be one line of the lock file (pure)."""
    if not owner or "\n" in owner or "\r" in owner:
        raise ValueError(f"invalid lock owner: {owner!r}")


def _under_flock(deploy_to: str, body: str, *args: str | int) -> str:
    """Run a script while holding flock on deployTo, creating deployTo first (pure)."""
    inner = cmd("flock", "-w", FLOCK_WAIT_SECONDS, deploy_to, "sh", "-c", body, "sh", *args)
    return f"{cmd('mkdir', '-p', '--', deploy_to)} && {inner}"


def acquire_lock_command(deploy_to: str, owner: str, ttl_seconds: int, now: datetime) -> str:
    """Take, refresh or take over the lock unless another owner holds it unexpired (pure)."""
    _check_owner(owner)
    epoch = int(_aware(now).timestamp())
    return _under_flock(deploy_to, _ACQUIRE, lock_path(deploy_to), owner, epoch, epoch + max(1, ttl_seconds))


def _aware(moment: datetime) -> datetime:
    """A naive datetime read as UTC (pure)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _int_or_none(text: str) -> int | None:
    """An int, None when blank or malformed (pure)."""
    try:
        return int(text)
    except ValueError:
        return None


def parse_acquire(stdout: str, owner: str) -> LockOutcome:
    """The LockOutcome printed by the acquire script (pure); raises ValueError on unknown output."""
    for line in stdout.splitlines():
        state, _, rest = line.partition("\t")
        expires_text, _, who = rest.partition("\t")
        if state == "held":
            return LockOutcome(False, who, _int_or_none(expires_text), who, _int_or_none(expires_text))
        if state == "acquired":
            previous = who or None
            return LockOutcome(True, owner, None, previous, _int_or_none(expires_text) if previous else None)
    raise ValueError(f"unexpected lock output: {stdout!r}")


def _iso(epoch: int | None) -> str:
    """An epoch as an ISO-8601 UTC time, 'unknown' for None (pure)."""
    if epoch is None:
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def acquire_lock(runner: Runner, deploy_to: str, owner: str, ttl_seconds: int, now: datetime) -> LockOutcome:
    """Take the host lock for `owner`; raises LockConflict naming the holder (side effect: the lock file)."""
    command = acquire_lock_command(deploy_to, owner, ttl_seconds, now)
    result = await runner.run(command, check=False)
    if not result.ok:
        raise CommandFailed(runner.name, f"lock {lock_path(deploy_to)}", result.exit_status, result.stderr)
    outcome = parse_acquire(result.stdout, owner)
    if not outcome.acquired:
        raise LockConflict(
            runner.name,
            f"{lock_path(deploy_to)} is held by {outcome.holder} until {_iso(outcome.expires)}",
        )
    return outcome


def release_lock_command(deploy_to: str, owner: str) -> str:
    """Remove the lock only when `owner` holds it (pure)."""
    _check_owner(owner)
    guard = cmd("test", "-d", deploy_to)
    return f"if {guard}; then {_under_flock(deploy_to, _RELEASE, lock_path(deploy_to), owner)}; else echo absent; fi"


async def release_lock(runner: Runner, deploy_to: str, owner: str) -> bool:
    """Release the lock if we hold it; True when a lock was removed (side effect: the lock file)."""
    result = await runner.run(release_lock_command(deploy_to, owner))
    return result.stdout.strip() == "released"


def parse_lock_file(text: str) -> tuple[str, int | None] | None:
    """(owner, expiry) from the lock file's content, None when empty (pure)."""
    lines = text.splitlines()
    if not lines or not lines[0]:
        return None
    return lines[0], _int_or_none(lines[1]) if len(lines) > 1 else None


async def read_lock(runner: Runner, deploy_to: str) -> tuple[str, int | None] | None:
    """Who holds the lock and until when, None when unlocked (side effects: none)."""
    path = lock_path(deploy_to)
    result = await runner.run(f"{cmd('cat', '--', path)} 2>/dev/null || true")
    return parse_lock_file(result.stdout)
