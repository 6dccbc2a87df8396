"""`kubectl kapistrano wait RELEASE`: a watch until ready/complete, returning at once on Paused or Stalled."""

from __future__ import annotations

import argparse
import sys
import time

from kapistrano.api.release import GROUP
from kapistrano.cli.kubectl_plugin import Outcome, Verdict, observed, status_of, verdict
from kapistrano.cli.plugin_api import Obj, PluginError, Releases

#: Exit code of `wait` when the Release is paused (by a request, spec.paused or a canary stop).
PAUSED_EXIT = 3


def judge(obj: Obj, goal: str) -> Verdict:
    """The verdict, with a paused Release (observed) told apart from one still on its way (pure)."""
    found = verdict(obj, goal)
    status = status_of(obj)
    if found.outcome == Outcome.WAITING and status is not None and observed(obj, status) and status.phase == "Paused":
        return Verdict(Outcome.PAUSED, status.message or "paused")
    return found


def settled(name: str, found: Verdict) -> int | None:
    """The exit code once the wait is over, printing why; None while waiting (prints)."""
    if found.outcome == Outcome.DONE:
        print(f"release.{GROUP}/{name}: {found.message}")
        return 0
    if found.outcome == Outcome.FAILED:
        raise PluginError(f"release.{GROUP}/{name} stalled: {found.message}")
    if found.outcome == Outcome.PAUSED:
        print(f"error: release.{GROUP}/{name} paused: {found.message}", file=sys.stderr)
        return PAUSED_EXIT
    return None


def cmd_wait(args: argparse.Namespace, releases: Releases) -> int:
    """Watch the Release until the goal (0), Stalled (1), Paused (3) or the timeout (1) (calls the API)."""
    deadline = time.monotonic() + args.timeout
    obj = releases.get(args.name)
    said = [""]
    while True:
        code = _check(args, obj, said)
        if code is not None:
            return code
        left = deadline - time.monotonic()
        if left <= 0:
            raise PluginError(f"timed out after {args.timeout:g}s: {said[0]}")
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        for obj in releases.watch(args.name, False, version, timeout=left):
            code = _check(args, obj, said)
            if code is not None:
                return code


def _check(args: argparse.Namespace, obj: Obj, said: list[str]) -> int | None:
    """The exit code when the wait is over, else None after saying what it waits for once (prints)."""
    found = judge(obj, args.goal)
    code = settled(args.name, found)
    if code is None and found.message != said[0]:
        print(f"waiting: {found.message}", file=sys.stderr)
        said[0] = found.message
    return code
