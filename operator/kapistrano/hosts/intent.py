"""The action marker `<deployTo>/.kapistrano.action`: an action of a Release is under way on this host.

Written before an action does anything to the host's processes, removed once it has ended well, so
the host itself says what was being done to it when its deployer was killed (Rule 1: hosts are the
source of truth), whenever the Release status was last saved. The file holds six lines: the owner
(Release uid), the action kind (Publish, Rollback, Restart, Heal, Revive), the version it is carried
out for, the release `current` pointed at before (empty when unknown), a token naming this one
action and the host's uptime when it was written (so a resumed restart tells the processes it
already replaced, started later, from those it had not reached). It is replaced with a rename, so
a reader never sees half of it. It is removed only once a status save recording the action's end
has landed, and only when it still names that action: until then a run started after a kill
resumes the action (which finds the host done and keeps it as it is, or, for a restart request,
makes it again where it had not replaced the processes yet) instead of starting it afresh. An
action that fails leaves it, and the next run resumes.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import cmd

MARKER_FILE = ".kapistrano.action"


@dataclass(frozen=True)
class ActionMark:
    """What the marker says: who began which action, for which version, from which release."""

    owner: str
    kind: str
    version: str
    previous_release: str | None = None
    #: Names this one action, so that clearing a finished action never removes the next one's marker.
    token: str = ""
    #: The host's uptime in seconds when the marker was written; None in a marker without it.
    uptime: float | None = None

    def started_after(self, started: float | None) -> bool:
        """Whether a process that started `started` s after boot started after this marker was written (pure)."""
        return started is not None and self.uptime is not None and started > self.uptime


def marker_path(deploy_to: str) -> str:
    """<deployTo>/.kapistrano.action (pure)."""
    return posixpath.join(deploy_to, MARKER_FILE)


def _fields(mark: ActionMark) -> tuple[str, str, str, str, str]:
    """The marker's lines; raises ValueError for a value that is not one line (pure)."""
    lines = (mark.owner, mark.kind, mark.version, mark.previous_release or "", mark.token)
    if not all(lines[:3]) or any("\n" in line or "\r" in line for line in lines):
        raise ValueError(f"invalid action marker: {mark!r}")
    return lines


def write_mark_command(deploy_to: str, mark: ActionMark) -> str:
    """Write the marker atomically (a temporary file renamed over it) (pure)."""
    path = marker_path(deploy_to)
    tmp = f"{path}.tmp"
    uptime = '"$(cut -d " " -f 1 /proc/uptime 2>/dev/null)"'
    body = cmd("printf", "%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n", *_fields(mark)) + " " + uptime
    return f"{cmd('mkdir', '-p', '--', deploy_to)} && {body} > {cmd(tmp)} && {cmd('mv', '-f', '--', tmp, path)}"


def clear_mark_command(deploy_to: str, owner: str, token: str) -> str:
    """Remove the marker when it still names `owner`'s action `token`; any other marker is left (pure)."""
    path = marker_path(deploy_to)
    named = f'"$(sed -n "1p;5p" -- {cmd(path)} 2>/dev/null)" = {cmd(owner + chr(10) + token)}'
    return f"if [ {named} ]; then {cmd('rm', '-f', '--', path)}; fi"


def read_mark_command(deploy_to: str) -> str:
    """Print the marker, nothing when there is none (pure)."""
    return f"{cmd('cat', '--', marker_path(deploy_to))} 2>/dev/null || true"


def parse_mark(text: str) -> ActionMark | None:
    """The marker's content; None when empty or cut short (pure)."""
    lines = text.splitlines()
    if len(lines) < 3 or not all(lines[:3]):
        return None
    previous = lines[3] if len(lines) > 3 and lines[3] else None
    token = lines[4] if len(lines) > 4 else ""
    return ActionMark(lines[0], lines[1], lines[2], previous, token, _float(lines[5]) if len(lines) > 5 else None)


def _float(text: str) -> float | None:
    """A float, None when blank or malformed (pure)."""
    try:
        return float(text)
    except ValueError:
        return None


async def write_mark(runner: Runner, deploy_to: str, mark: ActionMark) -> None:
    """Say on the host that an action is under way (side effect: the marker file)."""
    await runner.run(write_mark_command(deploy_to, mark))


async def clear_mark(runner: Runner, deploy_to: str, owner: str, token: str) -> None:
    """Say on the host that `owner`'s action `token` ended (side effect: the marker file)."""
    await runner.run(clear_mark_command(deploy_to, owner, token))


async def read_mark(runner: Runner, deploy_to: str) -> ActionMark | None:
    """The action under way on the host, if any (side effects: none)."""
    return parse_mark((await runner.run(read_mark_command(deploy_to))).stdout)
