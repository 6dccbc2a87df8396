"""Hooks on a host: the output of each is kept in shared/log/hooks/ and passed on line by line as it comes.

stdout and stderr of a hook share one pipe, so its lines keep the order the hook wrote them in. The
host keeps the whole output in `<deployTo>/shared/log/hooks/<release>-<hook>.log` (appended to, so a
retried hook keeps the failed run's output above the new one); a failed hook raises HookFailed with
its last lines, redacted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import PurePosixPath

from kapistrano.hosts.errors import HookFailed
from kapistrano.hosts.shell import quote, user_command
from kapistrano.hosts.ssh import SshConnection
from kapistrano.redaction import redact

#: Lines of a failed hook's output that go into its error (status message, Event).
TAIL_LINES = 20
#: At most this many characters of those lines (an Event message is cut at 1024).
TAIL_CHARS = 800


def log_path(deploy_to: str, release_dir: str, hook: str) -> str:
    """Where a hook's output is kept on the host: shared/log/hooks/<release>-<hook>.log (pure)."""
    return f"{deploy_to.rstrip('/')}/shared/log/hooks/{PurePosixPath(release_dir).name}-{hook}.log"


def hook_command(directory: str, command: str, log: str) -> str:
    """A shell script running a user's hook in `directory` with its output teed into `log` (pure).

    The hook's exit status comes back through fd 3, since a pipeline's status is tee's (POSIX sh
    has no pipefail); fds 3 and 4 are closed for the hook, so a daemon it starts holds no pipe open.
    """
    hook = "{ " + user_command(directory, command) + "; } 2>&1 3>&- 4>&-; echo $? >&3"
    teed = "{ " + hook + "; } | tee -a " + quote(log) + " >&4 3>&-"
    lines = [
        f"mkdir -p {quote(str(PurePosixPath(log).parent))} || exit 1",
        "exec 4>&1",
        "status=$( { " + teed + "; } 3>&1 )",
        'exit "${status:-1}"',
    ]
    return "\n".join(lines)


async def run_hook(
    conn: SshConnection,
    name: str,
    command: str,
    *,
    deploy_to: str,
    directory: str,
    on_line: Callable[[str], None],
    timeout: float,
) -> None:
    """Run one hook, each output line passed to `on_line`; raises HookFailed (network I/O, writes the log)."""
    log = log_path(deploy_to, directory, name)
    last: deque[str] = deque(maxlen=TAIL_LINES)

    def line(text: str) -> None:
        last.append(text)
        on_line(text)

    status = await conn.stream(hook_command(directory, command, log), line, timeout=timeout)
    if status != 0:
        raise HookFailed(conn.name, name, status, tail_of(last), log)


def tail_of(lines: deque[str] | list[str]) -> str:
    """The last lines of output, at most TAIL_CHARS characters, key material removed (pure)."""
    text = redact("\n".join(lines).strip())
    return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]
