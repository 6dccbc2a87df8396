"""The one place remote command lines are built. Every value is shell-quoted.

User-given commands (hooks, start/stop commands, exec probes) are the only raw shell, and they are
always run as `cd <dir> && <command>` through `user_command`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping


def quote(value: str | int) -> str:
    """Quote one value for a POSIX shell (pure)."""
    return shlex.quote(str(value))


def cmd(*argv: str | int) -> str:
    """A command line with every argument quoted (pure)."""
    return " ".join(quote(a) for a in argv)


def chain(*commands: str) -> str:
    """Commands joined with && so the first failure stops the rest (pure)."""
    return " && ".join(c for c in commands if c)


def with_env(env: Mapping[str, str], command: str) -> str:
    """Prefix a command with quoted environment assignments (pure)."""
    assignments = " ".join(f"{k}={quote(v)}" for k, v in env.items())
    return f"env {assignments} {command}" if assignments else command


def user_command(directory: str, command: str, env: Mapping[str, str] | None = None) -> str:
    """Run a user-given shell command in a directory (pure): the only raw shell we emit."""
    inner = with_env(env or {}, cmd("sh", "-c", command))
    return chain(cmd("cd", directory), inner)


#: The line that opens a section of a script's output: `== <name>`.
SECTION = "=="


def section(name: str, body: str, *args: str) -> list[str]:
    """Script lines that print a `== name` header, then run `body` with `args` as $1.. in a subshell (pure).

    The subshell keeps the body's `exit` and variables to itself, so many bodies share one script.
    """
    return [f"echo {SECTION} {name}", f"( set -- {cmd(*args)}", body.strip("\n"), ")"]


def split_sections(output: str) -> dict[str, str]:
    """Section name -> its text, from output whose sections start with `== <name>` lines (pure)."""
    found: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in output.removesuffix("\n").split("\n") if output else []:
        head, _, name = line.partition(" ")
        if head == SECTION and name:
            lines = found.setdefault(name, [])
        elif lines is not None:
            lines.append(line)
    return {name: "".join(line + "\n" for line in body) for name, body in found.items()}


def script(lines: Iterable[str]) -> str:
    """A multi-line shell script that stops at the first failing line (pure)."""
    return "set -e\n" + "\n".join(lines) + "\n"


#: Words that make a command line more than one plain program invocation when they come first.
_SHELL_WORDS = frozenset(
    {"!", "{", "}", "(", ")", "[[", "case", "do", "done", "elif", "else", "esac", "fi", "for", "function", "if"}
    | {"in", "select", "then", "until", "while", "exec", "cd", "export", "set", "unset", "eval", "trap", "."}
    | {"source", "alias", "readonly", "local", "return", "exit"}
)
_OPERATOR_CHARS = frozenset("();<>|&")


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
#: Characters that make the shell expand a word: an assignment holding one cannot move behind `env`.
_EXPANDED = frozenset("$`~*?[")


def _words(command: str) -> list[str] | None:
    """The shell words of a one-line command, None when it has several lines or cannot be split (pure)."""
    if "\n" in command or "\r" in command:
        return None
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None


def _assignments(words: list[str]) -> int:
    """How many leading words are variable assignments (`RAILS_ENV=production`) (pure)."""
    count = 0
    while count < len(words) and _ASSIGNMENT.match(words[count]):
        count += 1
    return count


def _one_program(words: list[str]) -> bool:
    """The words are one program with its arguments: no shell keyword, operator or assignment (pure)."""
    if not words or words[0] in _SHELL_WORDS or "=" in words[0]:
        return False
    return not any(word and set(word) <= _OPERATOR_CHARS for word in words)


def is_simple_command(command: str) -> bool:
    """True when a user command is one program invocation that `exec` can replace the shell with (pure).

    Conservative: pipelines, lists, redirections, subshells, assignments, several lines or anything
    shlex cannot split count as not simple.
    """
    return _one_program(_words(command) or [])


def exec_if_simple(command: str) -> str:
    """Make a simple user command replace its shell, so the shell's pid becomes the program's (pure).

    `RAILS_ENV=production bundle exec sidekiq` goes through `env`: `exec` itself takes no
    assignments. A command that is not simple is left as it is (its shell's pid is the one known).
    """
    words = _words(command) or []
    settings = _assignments(words)
    if not _one_program(words[settings:]):
        return command
    if not settings:
        return f"exec {command}"
    # As arguments of env, values would be split and globbed where as assignments they are not,
    # and ~ would not be expanded: such a command keeps its shell (and is stopped as a group).
    if any(set(word) & _EXPANDED for word in words[:settings]):
        return command
    return f"exec env {command}"


def replaces_shell(command: str) -> bool:
    """True when the program a user command runs takes its shell's pid: made so here, or `exec` by the user (pure).

    Otherwise (`a | b`, `a && b`) the pid kapistrano knows is a shell's, and the program is its child.
    """
    words = _words(command) or []
    return exec_if_simple(command) != command or (words[:1] == ["exec"] and _one_program(words[1:]))


def detached(command: str, env: Mapping[str, str], log_file: str) -> str:
    """Start a user command in the background in its own session (pure).

    stdin is /dev/null and output is appended to `log_file`; `$!` after it is the pid of the
    session's shell, which is the program itself when the command is simple (see exec_if_simple).
    """
    launched = with_env(env, cmd("setsid", "sh", "-c", exec_if_simple(command)))
    return f"{launched} </dev/null >>{quote(log_file)} 2>&1 &"
