"""The host lock `<deployTo>/.kapistrano.lock`: which Release is deploying there, from which process, until when.

The file holds up to six lines: the owner (a Release uid, or `manual:<user>@<machine>` for a lock taken
by hand with `kapistrano lock acquire`), the expiry (Unix seconds, computed with the HOST's clock, so a
caller's clock running late or early does not matter), the process instance that holds it, when that
process last refreshed it (host clock), a message ("maintenance") and since when the owner holds it
(host clock). Locks written before the last two lines existed read as having no message and no start.
Another Release waits for the expiry (Conflict). The same Release run by another process (a second
operator replica, a second `kapistrano apply`) waits too, unless that process is known to be gone:
an instance on this very machine whose pid no longer runs (an operator restarted in place takes its
lock back at once), or one that has not refreshed the lock for STALE_SECONDS (an operator pod
replaced elsewhere). A peer named gone by the operator's peering is taken over once its lock has not
been refreshed for a short grace (hosts/takeover.py says why that is safe).

Reading and rewriting happens under `flock` on the deployTo directory itself (a directory is never
replaced, unlike a lock file), so two racing processes cannot both win; the file is replaced with a
rename, so a reader never sees half of it. `hold()` runs an action while refreshing its lock, and
stops the action when the lock turns out to be no longer its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from kapistrano.hosts.errors import CommandFailed, HostError, LockConflict
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import SECTION, cmd, quote
from kapistrano.hosts.takeover import DEPARTED, TAKEOVER_POLL_SECONDS, grace_wait_limit, takeover_grace

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_FILE = ".kapistrano.lock"
#: The same Release may take over a lock its other process has not refreshed for this long (an
#: operator pod replaced mid-rollout); a live process refreshes it every LOCK_REFRESH_SECONDS at most.
STALE_SECONDS = 120
#: How long to wait for another operator's read-modify-write of the lock file (milliseconds of work).
FLOCK_WAIT_SECONDS = 10

_ACQUIRE = r"""
set -e
lock=$1 owner=$2 instance=$3 ttl=$4 takeover=$5 stale=$6 message=$7 grace=${8:-0}
now=$(date +%s)
prev_owner="" prev_expires="" prev_instance="" prev_refreshed=0 prev_message="" since=$now
if [ -f "$lock" ]; then
  # Builtin reads, not a `sed` per line: the lock is refreshed on every reading of every host.
  { IFS= read -r prev_owner; IFS= read -r prev_expires; IFS= read -r prev_instance; IFS= read -r prev_refreshed
    IFS= read -r prev_message; IFS= read -r prev_since; } < "$lock" || :
  [ "$prev_refreshed" -ge 0 ] 2>/dev/null || prev_refreshed=0
  # A named takeover waits until the lock is `grace` seconds old: its holder may still be acting.
  [ "$prev_instance" = "$takeover" ] && [ $((now - prev_refreshed)) -lt "$grace" ] && takeover=""
  # A process that stopped refreshing its lock for `stale` seconds is gone: its Release may take it.
  [ $((now - prev_refreshed)) -gt "$stale" ] && takeover=$prev_instance
  if [ "$prev_expires" -gt "$now" ] 2>/dev/null; then
    if [ "$prev_owner" != "$owner" ]; then
      printf 'held\t%s\t%s\t%s\t%s\n' "$prev_expires" "$prev_owner" "$prev_instance" "$prev_message"
      exit 0
    fi
    if [ -n "$prev_instance" ] && [ "$prev_instance" != "$instance" ] && [ "$prev_instance" != "$takeover" ]; then
      printf 'sibling\t%s\t%s\t%s\t%s\n' "$prev_expires" "$prev_owner" "$prev_instance" "$prev_message"
      exit 0
    fi
    # The same owner refreshing its unexpired lock has held it since it first took it.
    [ "$prev_since" -ge 0 ] 2>/dev/null && since=$prev_since
  fi
fi
tmp="$lock.tmp.$$"
printf '%s\n%s\n%s\n%s\n%s\n%s\n' "$owner" "$((now + ttl))" "$instance" "$now" "$message" "$since" > "$tmp"
mv -f -- "$tmp" "$lock"
printf 'acquired\t%s\t%s\t%s\n' "$prev_expires" "$prev_owner" "$prev_instance"
"""

_RELEASE = r"""
set -e
lock=$1 owner=$2 instance=$3
[ -f "$lock" ] || { echo absent; exit 0; }
holder= held_by=
{ IFS= read -r holder; IFS= read -r _; IFS= read -r held_by; } < "$lock" || :
if [ "$holder" = "$owner" ] && { [ -z "$instance" ] || [ "$held_by" = "$instance" ] || [ -z "$held_by" ]; }; then
  rm -f -- "$lock"; echo released
else
  printf 'other\t%s\n' "$holder"
fi
"""


def _start_ticks(pid: int) -> str | None:
    """When a local process started, in clock ticks since boot; None when it does not run (reads /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_instance(pid: int | None = None) -> str:
    """This process as a lock holder: host name, pid and start time (reads /proc)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{pid}/{_start_ticks(pid) or 0}"


#: The instance of this process, fixed for its lifetime.
INSTANCE = process_instance()


def is_dead_here(instance: str) -> bool:
    """True when `instance` is a process of this machine that no longer runs (reads /proc)."""
    host, _, rest = instance.partition("/")
    pid_text, _, ticks = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return _start_ticks(int(pid_text)) != ticks


@dataclass(frozen=True)
class LockOutcome:
    """What acquiring the lock found: who held it before (if anyone) and whether we have it now."""

    acquired: bool
    holder: str
    expires: int | None
    previous_owner: str | None
    previous_expires: int | None
    #: The process instance holding the lock now (when not acquired) or before (when acquired).
    instance: str = ""
    #: Not acquired because the same owner holds it from another process.
    sibling: bool = False
    #: The holder's message ("maintenance") when not acquired; "" when it gave none.
    message: str = ""

    @property
    def taken_over(self) -> bool:
        """True when we replaced another owner's expired lock (pure)."""
        return self.acquired and self.previous_owner not in (None, self.holder)


def lock_path(deploy_to: str) -> str:
    """<deployTo>/.kapistrano.lock (pure)."""
    return posixpath.join(deploy_to, LOCK_FILE)


def _check_line(value: str, what: str) -> None:
    """Reject values that cannot be one line of the lock file (pure)."""
    if "\n" in value or "\r" in value or "\t" in value:
        raise ValueError(f"invalid lock {what}: {value!r}")


def _check_owner(owner: str) -> None:
    """Reject owners that cannot be one line of the lock file (pure)."""
    if not owner:
        raise ValueError(f"invalid lock owner: {owner!r}")
    _check_line(owner, "owner")


def _under_flock(deploy_to: str, body: str, *args: str | int) -> str:
    """Run a script while holding flock on deployTo, creating deployTo first (pure)."""
    inner = cmd("flock", "-w", FLOCK_WAIT_SECONDS, deploy_to, "sh", "-c", body, "sh", *args)
    return f"{{ [ -d {quote(deploy_to)} ] || {cmd('mkdir', '-p', '--', deploy_to)}; }} && {inner}"


def acquire_lock_command(
    deploy_to: str,
    owner: str,
    ttl_seconds: int,
    instance: str = INSTANCE,
    *,
    takeover: str = "",
    stale_seconds: int = STALE_SECONDS,
    message: str = "",
    grace: int = 0,
) -> str:
    """Take, refresh or take over the lock unless another owner or process holds it unexpired (pure).

    The expiry is the host's `date +%s` plus ttl_seconds; `takeover` names a gone instance of the
    same owner whose lock may be taken once not refreshed for `grace` seconds, as is one of the same
    owner not refreshed for stale_seconds. `message` says why the lock is held; others see it when
    they cannot take the lock.
    """
    _check_owner(owner)
    _check_line(instance, "instance")
    _check_line(message, "message")
    ttl, stale = max(1, ttl_seconds), max(1, stale_seconds)
    args = (lock_path(deploy_to), owner, instance, ttl, takeover, stale, message, max(0, grace))
    return _under_flock(deploy_to, _ACQUIRE, *args)


def then_command(deploy_to: str, owner: str, ttl_seconds: int, then: str) -> str:
    """A first try at the lock, then `then` only when it was acquired; prints the lock's answer (pure)."""
    first = acquire_lock_command(deploy_to, owner, ttl_seconds)
    return f'out=$({first}) || exit $?; printf "%s\\n" "$out"; case $out in acquired*) {then} ;; esac'


def refresh_lines(deploy_to: str, owner: str, ttl_seconds: int) -> list[str]:
    """Script lines making a first try at the lock inside another script, its output as section `lock` (pure)."""
    return [f"echo {SECTION} lock", acquire_lock_command(deploy_to, owner, ttl_seconds) + " || exit $?"]


def _int_or_none(text: str) -> int | None:
    """An int, None when blank or malformed (pure)."""
    try:
        return int(text)
    except ValueError:
        return None


def parse_acquire(stdout: str, owner: str) -> LockOutcome:
    """The LockOutcome printed by the acquire script (pure); raises ValueError on unknown output."""
    for line in stdout.split("\n"):  # not splitlines(): a message may hold \x1c-\x1e, \x85, \u2028
        state, _, rest = line.partition("\t")
        expires_text, _, rest = rest.partition("\t")
        who, _, rest = rest.partition("\t")
        instance, _, message = rest.partition("\t")
        expires = _int_or_none(expires_text)
        if state in ("held", "sibling"):
            sibling = state == "sibling"
            return LockOutcome(False, who, expires, who, expires, instance, sibling=sibling, message=message)
        if state == "acquired":
            previous = who or None
            return LockOutcome(True, owner, None, previous, expires if previous else None, instance)
    raise ValueError(f"unexpected lock output: {stdout!r}")


def _iso(epoch: int | None) -> str:
    """An epoch as an ISO-8601 UTC time, 'unknown' for None (pure)."""
    if epoch is None:
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def _try_acquire(runner: Runner, command: str, deploy_to: str, owner: str) -> LockOutcome:
    """Run one acquire script and parse its answer (side effect: the lock file)."""
    result = await runner.run(command, check=False)
    if not result.ok:
        raise CommandFailed(runner.name, f"lock {lock_path(deploy_to)}", result.exit_status, result.stderr)
    return parse_acquire(result.stdout, owner)


async def acquire_lock(
    runner: Runner,
    deploy_to: str,
    owner: str,
    ttl_seconds: int,
    *,
    instance: str = INSTANCE,
    stale_seconds: int = STALE_SECONDS,
    message: str = "",
    tried: str | None = None,
) -> LockOutcome:
    """Take or refresh the host lock for `owner` from this process; raises LockConflict (side effect: the lock file).

    A lock of the same owner left by a dead process of this machine is taken over at once, one of a
    process the peering names gone once its grace has run (waiting for it), one not refreshed for
    stale_seconds too. `message` is kept in the lock file. `tried` is the output of a first try
    already made (refresh_lines run with a read of the host): then no command runs unless a
    takeover needs one.
    """
    if tried is None:
        command = acquire_lock_command(
            deploy_to, owner, ttl_seconds, instance, stale_seconds=stale_seconds, message=message
        )
        outcome = await _try_acquire(runner, command, deploy_to, owner)
    else:
        outcome = parse_acquire(tried, owner)
    grace = takeover_grace(dead_here=is_dead_here(outcome.instance), departed=outcome.instance in DEPARTED)
    if outcome.sibling and grace is not None:
        command = acquire_lock_command(
            deploy_to, owner, ttl_seconds, instance, takeover=outcome.instance, stale_seconds=stale_seconds,
            message=message, grace=grace,
        )  # fmt: skip
        outcome = await _take_over(runner, command, deploy_to, owner, grace=grace, gone=outcome.instance)
    if outcome.acquired:
        return outcome
    raise LockConflict(runner.name, conflict_message(deploy_to, outcome))


async def _take_over(runner: Runner, command: str, deploy_to: str, owner: str, *, grace: int, gone: str) -> LockOutcome:
    """Try a takeover of `gone`'s lock until its grace has run or it proves alive (side effect: the lock file)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_wait_limit(grace)
    while True:
        outcome = await _try_acquire(runner, command, deploy_to, owner)
        if outcome.acquired or not outcome.sibling or outcome.instance != gone or loop.time() >= deadline:
            return outcome
        await asyncio.sleep(TAKEOVER_POLL_SECONDS)


def conflict_message(deploy_to: str, outcome: LockOutcome) -> str:
    """Who holds the lock, until when and why, for a LockConflict (pure)."""
    who = f"this Release in another process ({outcome.instance})" if outcome.sibling else outcome.holder
    until = "it is released" if is_manual(outcome.holder) else _iso(outcome.expires)
    why = f": {outcome.message}" if outcome.message else ""
    return f"{lock_path(deploy_to)} is held by {who} until {until}{why}"


#: Owners of locks taken by hand (`kapistrano lock acquire`) start with this.
MANUAL_PREFIX = "manual:"


def is_manual(owner: str) -> bool:
    """Whether a lock owner is a person who took the lock by hand (pure)."""
    return owner.startswith(MANUAL_PREFIX)


def release_lock_command(deploy_to: str, owner: str, instance: str = INSTANCE) -> str:
    """Remove the lock only when `owner` holds it from `instance` (any instance when "") (pure)."""
    _check_owner(owner)
    _check_line(instance, "instance")
    guard = cmd("test", "-d", deploy_to)
    script = _under_flock(deploy_to, _RELEASE, lock_path(deploy_to), owner, instance)
    return f"if {guard}; then {script}; else echo absent; fi"


async def release_lock(runner: Runner, deploy_to: str, owner: str, *, instance: str = INSTANCE) -> bool:
    """Release the lock if `owner` holds it from `instance` ("" = any process); True when removed (side effect)."""
    result = await runner.run(release_lock_command(deploy_to, owner, instance))
    return result.stdout.strip() == "released"


async def remove_lock(runner: Runner, deploy_to: str) -> None:
    """Remove the lock whoever holds it: for a person who knows its holder is gone (side effect: the lock file)."""
    await runner.run(cmd("rm", "-f", "--", lock_path(deploy_to)))


@dataclass(frozen=True)
class LockInfo:
    """The content of a lock file."""

    owner: str
    expires: int | None
    instance: str = ""
    #: When its process last refreshed it (host clock); None in locks written before this was kept.
    refreshed: int | None = None
    #: Why it is held ("maintenance"); "" when none was given or the lock predates messages.
    message: str = ""
    #: Since when its owner holds it (host clock); None in locks written before this was kept.
    since: int | None = None


def parse_lock_file(text: str) -> LockInfo | None:
    """The lock file's owner, expiry, instance, refresh, message and start, None when empty (pure)."""
    lines = [*text.splitlines(), "", "", "", "", "", ""]
    if not lines[0]:
        return None
    numbers = _int_or_none(lines[1]), _int_or_none(lines[3]), _int_or_none(lines[5])
    return LockInfo(lines[0], numbers[0], lines[2], numbers[1], lines[4], numbers[2])


async def read_lock(runner: Runner, deploy_to: str) -> LockInfo | None:
    """Who holds the lock, until when and from which process; None when unlocked (side effects: none)."""
    path = lock_path(deploy_to)
    result = await runner.run(f"{cmd('cat', '--', path)} 2>/dev/null || true")
    return parse_lock_file(result.stdout)


class LockLost(LockConflict):
    """The lock of a host we were acting on is no longer ours: the action was stopped."""


async def hold(
    refresh: Callable[[], Awaitable[object]],
    period: float,
    work: Callable[[], Coroutine[Any, Any, T]],
    *,
    confirm: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """Confirm the lock, then run `work` while refreshing it every `period` s (side effects: refresh's, work's).

    Raises the confirmation's error (LockConflict when the lock is not ours) before `work` starts;
    stops `work` and raises LockLost when a later refresh finds it taken over (a peer judged us
    gone). A later refresh failing otherwise is logged and tried again at the next beat: the action
    itself reports real trouble. `confirm` (a refresh that does more in the same round trip) is
    the confirmation, else `refresh`.
    """
    await (confirm or refresh)()
    action = asyncio.create_task(work())
    beat = asyncio.create_task(_beat(refresh, period))
    try:
        await asyncio.wait({action, beat}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        beat.cancel()
        if not action.done():
            action.cancel()
        await asyncio.gather(action, beat, return_exceptions=True)
    if not action.cancelled():
        return action.result()  # done (or failed) before any loss was noticed
    lost = beat.result()  # the beat ended first: the lock is someone else's now
    raise LockLost(lost.host, f"stopped acting: {lost.message}") from lost


async def _beat(refresh: Callable[[], Awaitable[object]], period: float) -> LockConflict:
    """Refresh every `period` s until a refresh finds the lock not ours; returns that conflict (side effects)."""
    while True:
        await asyncio.sleep(period)
        try:
            await refresh()
        except LockConflict as conflict:
            return conflict
        except HostError as exc:
            log.warning("refreshing a host lock failed: %s", exc)
