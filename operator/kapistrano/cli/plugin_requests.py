"""`kubectl kapistrano pause|resume|promote|abort`: requests as annotations, never spec edits.

A GitOps sync of the unchanged manifest leaves annotations it does not own in place, so what these
commands do lasts. Each sets its annotation to the current UTC time (the request's identity) and
`kapistrano.dev/reason` to `--reason` (empty when none is given, so an old reason is not reused, and the
annotation's field manager still says who asked; a resume, which removes its annotation, is told by it).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kapistrano.api.release import (
    ABORT_ANNOTATION,
    GROUP,
    PAUSE_ANNOTATION,
    PROMOTE_ANNOTATION,
    REASON_ANNOTATION,
)
from kapistrano.api.status import ReleaseStatus, format_time

if TYPE_CHECKING:
    from kapistrano.cli.plugin_api import Releases

Patch = dict[str, Any]


def request_patch(annotation: str, now: datetime | None, reason: str | None) -> Patch:
    """Merge patch setting a request annotation to `now` (None removes it) and the reason (pure)."""
    value = format_time(now) if now is not None else None
    return {"metadata": {"annotations": {annotation: value, REASON_ANNOTATION: reason or ""}}}


def pause_patch(now: datetime, reason: str | None = None) -> Patch:
    """Merge patch that asks to hold the rollout (pure)."""
    return request_patch(PAUSE_ANNOTATION, now, reason)


def resume_patch(now: datetime, reason: str | None = None, *, at_canary: bool = False) -> Patch:
    """Merge patch that removes the pause request, and promotes past a canary stop it is held at (pure)."""
    patch = request_patch(PAUSE_ANNOTATION, None, reason)
    if at_canary:
        patch["metadata"]["annotations"][PROMOTE_ANNOTATION] = format_time(now)
    return patch


def promote_patch(now: datetime, reason: str | None = None) -> Patch:
    """Merge patch that asks to go on past the pauseAfterHosts stop (pure)."""
    return request_patch(PROMOTE_ANNOTATION, now, reason)


def abort_patch(now: datetime, reason: str | None = None) -> Patch:
    """Merge patch that asks to stop and roll updated hosts back to status.currentVersion (pure)."""
    return request_patch(ABORT_ANNOTATION, now, reason)


def at_canary(spec: dict[str, Any], status: ReleaseStatus | None) -> bool:
    """Held at a pauseAfterHosts stop, not by spec.paused (pure)."""
    canary = (spec.get("strategy") or {}).get("pauseAfterHosts") is not None
    return canary and not spec.get("paused") and status is not None and status.phase == "Paused"


def rolling_out(spec: dict[str, Any], status: ReleaseStatus | None) -> bool:
    """A rollout from an earlier version is under way (so an abort has hosts to roll back) (pure)."""
    return status is not None and bool(status.current_version) and status.current_version != spec.get("version")


def _done(name: str, what: str, patch: Patch) -> None:
    """Print what was asked, with the annotation values set (stdout)."""
    values = ", ".join(f"{k}={v}" for k, v in patch["metadata"]["annotations"].items() if v)
    print(f"release.{GROUP}/{name} {what}" + (f" ({values})" if values else ""))


def _ask(args: argparse.Namespace, releases: Releases, patch: Patch, what: str) -> int:
    """Apply a request's patch and say so (calls the API, prints)."""
    releases.patch(args.name, patch)
    _done(args.name, what, patch)
    return 0


def cmd_pause(args: argparse.Namespace, releases: Releases) -> int:
    """Set the pause request (calls the API)."""
    return _ask(args, releases, pause_patch(datetime.now(UTC), args.reason), "paused")


def cmd_resume(args: argparse.Namespace, releases: Releases) -> int:
    """Remove the pause request; promote past a canary stop the Release is held at (calls the API)."""
    from kapistrano.cli.kubectl_plugin import spec_of, status_of  # noqa: PLC0415  (the plugin imports this module)

    obj = releases.get(args.name)
    spec = spec_of(obj)
    if spec.get("paused"):
        print("warning: spec.paused is true in the manifest: set it to false there (in git)", file=sys.stderr)
    patch = resume_patch(datetime.now(UTC), args.reason, at_canary=at_canary(spec, status_of(obj)))
    return _ask(args, releases, patch, "resumed")


def cmd_promote(args: argparse.Namespace, releases: Releases) -> int:
    """Set the promote request (calls the API)."""
    return _ask(args, releases, promote_patch(datetime.now(UTC), args.reason), "promoted")


def cmd_abort(args: argparse.Namespace, releases: Releases) -> int:
    """Set the abort request; warns when no rollout is under way (calls the API)."""
    from kapistrano.cli.kubectl_plugin import spec_of, status_of  # noqa: PLC0415

    obj = releases.get(args.name)
    if not rolling_out(spec_of(obj), status_of(obj)):
        print("warning: no rollout from an earlier version is under way: the request changes nothing", file=sys.stderr)
    return _ask(args, releases, abort_patch(datetime.now(UTC), args.reason), "aborted")
