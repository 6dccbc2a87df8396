"""`kubectl kapistrano` arguments: subcommands, kubectl's global flags in any position, shell completion."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from kapistrano.cli import kubectl_plugin as kp
from kapistrano.cli import plugin_get, plugin_requests, plugin_wait
from kapistrano.cli.plugin_api import PluginError, Releases, connect
from kapistrano.cli.plugin_lock import add_lock_parser, cmd_lock
from kapistrano.cli.tail_args import add_tail_args
from kapistrano.cli.unlock import cmd_unlock

Command = Callable[[argparse.Namespace, Releases], int]

COMMANDS: dict[str, tuple[Command, str]] = {
    "get": (plugin_get.cmd_get, "show Releases with a per-host tree; -w watches"),
    "status": (kp.cmd_status, "show hosts and conditions; exit 0 when Ready=True"),
    "pause": (plugin_requests.cmd_pause, "hold the rollout (annotation kapistrano.dev/pause)"),
    "resume": (plugin_requests.cmd_resume, "resume the rollout, also past a canary stop"),
    "promote": (plugin_requests.cmd_promote, "go on past the pauseAfterHosts stop (annotation kapistrano.dev/promote)"),
    "abort": (plugin_requests.cmd_abort, "stop and roll updated hosts back to status.currentVersion"),
    "undo": (kp.cmd_undo, "abort a rollout under way, else roll spec.version back to the previous version"),
    "restart": (kp.cmd_restart, "restart every host's services, one host at a time, same version"),
    "retry": (kp.cmd_retry, "try the failed version again, without a version change"),
    "wait": (plugin_wait.cmd_wait, "wait until the Release is ready or complete; stops at Paused or Stalled"),
    "logs": (kp.cmd_logs, "tail a service's log on every host, lines prefixed by host"),
    "unlock": (cmd_unlock, "remove the Release's host locks over SSH, after a confirmation"),
    "lock": (cmd_lock, "show, take or release the Release's host locks over SSH"),
}
#: Options that take a value (the next word), for completion.
VALUE_FLAGS = frozenset(
    {"-n", "--namespace", "--kubeconfig", "--context", "--as", "--as-group", "--request-timeout", "-o", "--output"}
    | {"--timeout", "--for", "--to-version", "--reason", "--tail", "--hosts", "--roles", "--role", "-m", "--message"}
)


def global_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add kubectl's global flags; `suppress` (subcommands) keeps a value given before the command (changes parser)."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("-n", "--namespace", default=default, help="namespace (default: from the kubeconfig context)")
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", default=default, help="kubeconfig context (default: the current context)")
    parser.add_argument("--as", dest="as_user", metavar="USER", default=default, help="impersonate this user")
    parser.add_argument("--as-group", metavar="GROUP", default=default, help="impersonate this group")
    parser.add_argument(
        "--request-timeout", type=kp.parse_duration, default=default, help="per request, e.g. 5s (default: none)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per command, global flags before or after it (pure)."""
    parser = argparse.ArgumentParser(
        prog="kubectl kapistrano",
        description="Rollout commands for kapistrano.dev Releases.",
        epilog="See `kubectl kapistrano COMMAND --help`.",
    )
    global_flags(parser, suppress=False)
    shared = argparse.ArgumentParser(add_help=False)
    global_flags(shared, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plain = {name: text for name, (_, text) in COMMANDS.items() if name != "lock"}
    parsers = {name: sub.add_parser(name, parents=[shared], help=text) for name, text in plain.items()}
    for name, found in parsers.items():
        if name != "get":
            found.add_argument("name", metavar="RELEASE", type=kp.release_name, help="Release name (or release/NAME)")
    named = argparse.ArgumentParser(add_help=False, parents=[shared])
    named.add_argument("name", metavar="RELEASE", type=kp.release_name, help="Release name (or release/NAME)")
    add_lock_parser(sub, named)
    parsers["status"].add_argument("--role", help="only the hosts with this role (status.hosts[].roles)")
    plugin_get.add_arguments(parsers["get"])
    for name in ("pause", "resume", "promote", "abort", "undo"):
        parsers[name].add_argument("--reason", help="why (recorded in status.history, the Event and revisions.log)")
    parsers["undo"].add_argument("--to-version", metavar="V", help="roll back to this version (from the history)")
    add_tail_args(parsers["logs"], follow=("-f", "--follow"), lines=("--tail",))  # as `kubectl logs`
    wait = parsers["wait"]
    wait.add_argument("--for", dest="goal", choices=("ready", "complete"), default="ready", help="default: ready")
    wait.add_argument("--timeout", type=kp.parse_duration, default=300.0, help="e.g. 90s, 5m (default: 300s)")
    parsers["unlock"].add_argument("--host", action="append", metavar="NAME", help="only this host (repeatable)")
    parsers["unlock"].add_argument("-y", "--yes", action="store_true", help="do not ask for a confirmation")
    completion = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    completion.add_argument("shell", choices=("bash", "zsh"))
    sub.add_parser("__complete", add_help=False).add_argument("words", nargs="*")
    return parser


BASH = """# kubectl kapistrano completion for bash: source <(kubectl kapistrano completion bash)
_kubectl_kapistrano() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  COMPREPLY=( $(compgen -W "$(kubectl-kapistrano __complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null \\
    | grep -v '^:')" -- "$cur") )
}
complete -F _kubectl_kapistrano kubectl-kapistrano
"""
ZSH = """#compdef kubectl-kapistrano
# kubectl kapistrano completion for zsh: source <(kubectl kapistrano completion zsh)
_kubectl_kapistrano() {
  local -a found
  found=("${(@f)$(kubectl-kapistrano __complete -- "${(@)words[2,CURRENT]}" 2>/dev/null | grep -v '^:')}")
  compadd -- "${found[@]}"
}
compdef _kubectl_kapistrano kubectl-kapistrano
"""


def candidates(words: Sequence[str], names: Callable[[str | None], list[str]]) -> list[str]:
    """Completions of the last word, given the words before it; `names(namespace)` lists Releases (pure but names)."""
    *done, current = list(words) or [""]
    positional: list[str] = []
    namespace: str | None = None
    for i, word in enumerate(done):
        before = done[i - 1] if i else ""
        if before in VALUE_FLAGS:
            namespace = word if before in ("-n", "--namespace") else namespace
        elif not word.startswith("-"):
            positional.append(word)
    if done and done[-1] in VALUE_FLAGS:
        return []
    parser = build_parser()
    if current.startswith("-"):
        found = _options(parser, positional[0] if positional else None)
    elif not positional:
        found = [name for name in COMMANDS] + ["completion"]
    elif positional[0] == "completion":
        found = ["bash", "zsh"] if len(positional) == 1 else []
    elif len(positional) == 1 and positional[0] in COMMANDS:
        found = names(namespace)
    else:
        found = []
    return [c for c in found if c.startswith(current)]


def _options(parser: argparse.ArgumentParser, command: str | None) -> list[str]:
    """The option strings of the main parser or of a subcommand (pure)."""
    chosen = parser
    if command is not None:
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        chosen = subs.choices.get(command, parser)
    return sorted({o for a in chosen._actions for o in a.option_strings})


def release_names(args: argparse.Namespace) -> Callable[[str | None], list[str]]:
    """A lister of Release names in a namespace, empty on any error (calls the API)."""

    def names(namespace: str | None) -> list[str]:
        try:
            args.namespace = namespace or args.namespace
            listed = connect(args).list()
        except (PluginError, OSError):
            return []
        return [str((item.get("metadata") or {}).get("name")) for item in listed.get("items") or []]

    return names


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kubectl-kapistrano` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "completion":
        print(BASH if args.shell == "bash" else ZSH, end="")
        return 0
    if args.command == "__complete":
        print("\n".join([*candidates(args.words, release_names(args)), ":4"]))
        return 0
    run, _ = COMMANDS[args.command]
    try:
        return run(args, connect(args))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def complete_main() -> int:
    """Entry point of `kubectl_complete-kapistrano`, which kubectl runs to complete `kubectl kapistrano ...`."""
    return main(["__complete", "--", *sys.argv[1:]])
