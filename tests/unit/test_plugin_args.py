"""`kubectl kapistrano` as kubectl users expect: global flags anywhere, completion, get's tree and watch lines, wait."""

from __future__ import annotations

from typing import Any

import pytest
from kapistrano.cli import plugin_get, plugin_main, plugin_wait
from kapistrano.cli.kubectl_plugin import Outcome

GLOBALS = ["-n", "deploy", "--context", "prod", "--kubeconfig", "/k", "--as", "ops", "--request-timeout", "5s"]


@pytest.mark.parametrize(
    "argv",
    [
        [*GLOBALS, "promote", "billing"],
        ["promote", *GLOBALS, "billing"],
        ["promote", "billing", *GLOBALS],
        ["-n", "deploy", "--context", "prod", "promote", "billing", "--kubeconfig", "/k", "--as", "ops",
         "--request-timeout", "5s"],
    ],
)  # fmt: skip
def test_global_flags_work_in_any_position(argv: list[str]) -> None:
    args = plugin_main.build_parser().parse_args(argv)
    assert (args.command, args.name, args.namespace, args.context, args.kubeconfig) == (
        "promote",
        "billing",
        "deploy",
        "prod",
        "/k",
    )
    assert (args.as_user, args.request_timeout) == ("ops", 5.0)


def test_a_flag_after_the_command_wins_over_one_before() -> None:
    args = plugin_main.build_parser().parse_args(["-n", "a", "get", "-n", "b"])
    assert args.namespace == "b"


def test_without_flags_the_defaults_are_none() -> None:
    args = plugin_main.build_parser().parse_args(["abort", "billing", "--reason", "errors up"])
    assert (args.namespace, args.context, args.kubeconfig, args.as_user, args.request_timeout) == (None,) * 5
    assert args.reason == "errors up"


def test_get_takes_watch_output_and_all_namespaces() -> None:
    args = plugin_main.build_parser().parse_args(["get", "-A", "-w", "-o", "yaml"])
    assert (args.name, args.all_namespaces, args.watch, args.output) == (None, True, True, "yaml")
    with pytest.raises(SystemExit):
        plugin_main.build_parser().parse_args(["get", "-o", "wide-table"])


def names(namespace: str | None) -> list[str]:
    """Release names as the API would list them."""
    return {"deploy": ["billing", "bookings"]}.get(namespace or "", ["other"])


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([""], sorted([*plugin_main.COMMANDS, "completion"])),
        (["pro"], ["promote"]),
        (["-n", "deploy", "abort", "b"], ["billing", "bookings"]),
        (["abort", "-n", "deploy", ""], ["billing", "bookings"]),
        (["abort", ""], ["other"]),
        (["abort", "billing", ""], []),
        (["abort", "-n", ""], []),
        (["completion", ""], ["bash", "zsh"]),
        (["abort", "--re"], ["--reason", "--request-timeout"]),
    ],
)
def test_completion_candidates(words: list[str], expected: list[str]) -> None:
    assert sorted(plugin_main.candidates(words, names)) == sorted(expected)


def test_completion_scripts_call_back_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    for shell in ("bash", "zsh"):
        assert plugin_main.main(["completion", shell]) == 0
        assert "kubectl-kapistrano __complete" in capsys.readouterr().out


def release(phase: str, hosts: list[tuple[str, str, str, bool]], message: str = "") -> dict[str, Any]:
    """A Release object with a status observed at its generation."""
    return {
        "metadata": {"name": "app", "namespace": "deploy", "generation": 2},
        "spec": {"version": "v2"},
        "status": {
            "observedGeneration": 2,
            "phase": phase,
            "message": message,
            "currentVersion": "v1",
            "ready": "1/2",
            "hosts": [{"name": n, "phase": p, "version": v, "ready": r} for n, p, v, r in hosts],
        },
    }


def test_watch_lines_say_each_host_transition_once() -> None:
    seen: dict[str, Any] = {}
    first = release("Progressing", [("h1", "Ready", "v1", True), ("h2", "Ready", "v1", True)])
    assert plugin_get.transitions(seen, first) == [
        "deploy/app  Progressing",
        "deploy/app  h1  Ready  v1  ready=yes",
        "deploy/app  h2  Ready  v1  ready=yes",
    ]
    restarting = release("Progressing", [("h1", "Restarting", "v2", False), ("h2", "Ready", "v1", True)], "busy")
    assert plugin_get.transitions(seen, restarting) == ["deploy/app  h1  Restarting  v2  ready=no"]
    assert plugin_get.transitions(seen, restarting) == [], "the same state again prints nothing"


def test_the_tree_lists_every_host_under_its_release() -> None:
    tree = plugin_get.format_tree(release("Paused", [("h1", "Ready", "v2", True), ("h2", "Ready", "v1", True)]))
    lines = tree.splitlines()
    assert lines[2] == "Version:    v2 (current v1)"
    assert "├── h1   Host      Ready    v2        yes" in lines
    assert "└── h2   Host      Ready    v1        yes" in lines


def test_wait_stops_at_once_on_a_pause_with_the_message() -> None:
    paused = release("Paused", [("h1", "Ready", "v2", True)], "paused after 1 hosts (pauseAfterHosts)")
    verdict = plugin_wait.judge(paused, "ready")
    assert (verdict.outcome, verdict.message) == (Outcome.PAUSED, "paused after 1 hosts (pauseAfterHosts)")
    stale = {**paused, "metadata": {**paused["metadata"], "generation": 3}}
    assert plugin_wait.judge(stale, "ready").outcome == Outcome.WAITING, "a pause the operator has not seen yet"
