"""`kubectl kapistrano`: rollout commands for kapistrano.dev Releases (`kubectl rollout` ignores custom resources).

Installed as the `kubectl-kapistrano` console script, so kubectl finds it on PATH as a plugin::

    kubectl kapistrano get     [RELEASE] [-w] [-o json|yaml] [-A]
                                                    the Release with a per-host tree; -w watches (one line per
                                                    host transition); without RELEASE, every Release
    kubectl kapistrano status  RELEASE [--role ROLE]
                                                    hosts (only those with ROLE), conditions; exit 0 only when
                                                    Ready=True for the current spec
    kubectl kapistrano pause   RELEASE [--reason R] request a hold (annotation kapistrano.dev/pause)
    kubectl kapistrano resume  RELEASE [--reason R] remove the hold; at a pauseAfterHosts stop, promote past it
    kubectl kapistrano promote RELEASE [--reason R] go on past the pauseAfterHosts stop (kapistrano.dev/promote)
    kubectl kapistrano abort   RELEASE [--reason R] roll updated hosts back to status.currentVersion
                                                    (annotation kapistrano.dev/abort)
    kubectl kapistrano undo    RELEASE [--to-version V]
                                                    a rollout under way: abort it; else spec.version back to the
                                                    newest history entry before spec.version
    kubectl kapistrano restart RELEASE              rolling restart of every host's services, same version
    kubectl kapistrano retry   RELEASE              try the failed spec.version again (status.failedVersion)
    kubectl kapistrano wait    RELEASE [--for ready|complete] [--timeout 300s]
    kubectl kapistrano logs    RELEASE SERVICE [--hosts h1,h2] [-f/--follow] [--tail LINES]
                                                    tail shared/log/SERVICE.log on every host over SSH, with the
                                                    Release's Secret (needs `get` on that Secret)
    kubectl kapistrano unlock  RELEASE [--host NAME] [--yes]
                                                    remove host locks left by a process that is gone, over SSH
                                                    with the Release's Secret (needs `get` on it); asks first
    kubectl kapistrano completion bash|zsh          shell completion script
    kubectl kapistrano lock status|acquire|release RELEASE [--hosts h1,h2] [--roles r] [--message M] [--yes]
                                                    who holds each host's lock, since when and why; take it by
                                                    hand (rollouts get Conflict there) or release it, as
                                                    `kamal lock` (over SSH with the Release's Secret)

kubectl's global options work in any position: -n/--namespace (default: the kubeconfig context's namespace,
else `default`), --kubeconfig (default: $KUBECONFIG, else ~/.kube/config; in a pod, the service account),
--context, --as, --as-group, --request-timeout. RELEASE may be written `NAME`, `release/NAME` or
`releases.kapistrano.dev/NAME`.

Every change is a JSON merge patch of the Release's annotations (so it needs `patch` on releases.kapistrano.dev),
made with the field manager `kubectl-kapistrano`: the operator records it as who asked, and `--reason` (the
annotation kapistrano.dev/reason) as why, in status.history, an Event and every host's revisions.log. A GitOps
sync of the unchanged manifest leaves these annotations alone; spec.paused stays for pauses written in Git.

`restart` sets the annotation `kapistrano.dev/restartedAt` to the current UTC time (RFC 3339). The operator treats
each new value as a restart request: it restarts the services host by host, within maxUnavailable and with the
same readiness checks as a rollout, without changing the release; status.restartedAt records the request it
completed. `wait --for complete` also waits for that.

`retry` sets the annotation `kapistrano.dev/retry` to the current UTC time. The operator acts on each new value
once: a spec.version that failed (status.failedVersion) is rolled out again, hosts that failed included, without a
version change; status.retries counts the retries and status.retriedFor names the last request acted on.

`undo` after a finished rollout edits spec.version: with a GitOps tool (Argo CD, Flux) syncing the Release, the next
sync sets it back, so revert the commit in git instead (the plugin warns when it sees such a tool's markers).

`wait --for ready` returns once Ready=True for the current generation; `--for complete` also needs every host
available (minReadySeconds held), Reconciling not True and the last restart request done. It watches the Release
and returns at once, with the reason, when the operator reports Stalled=True (exit 1) or phase Paused (exit 3).

Exit codes: 0 done, 1 not ready / failed / nothing to do / API error, 2 bad usage, 3 paused (wait).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from kapistrano.api.release import (
    GROUP,
    PAUSE_ANNOTATION,
    RESTART_ANNOTATION,
    RETRY_ANNOTATION,
)
from kapistrano.api.status import Condition, HistoryEntry, ReleaseStatus, format_time
from kapistrano.cli import plugin_requests as requests
from kapistrano.cli.plugin_api import PluginError, Releases
from kapistrano.cli.plugin_roles import NoSuchRole, with_role

#: Markers of a GitOps tool owning the object: an undo made here would be reverted by its next sync.
GITOPS_MARKERS = (
    "argocd.argoproj.io/tracking-id",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
)

Obj = dict[str, Any]
Patch = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Pure: parsing arguments
# ------------------------------------------------------------------------------------------------

_RESOURCE_PREFIXES = {"release", "releases", "rel", f"release.{GROUP}", f"releases.{GROUP}", f"rel.{GROUP}"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def release_name(arg: str) -> str:
    """The Release name from NAME, release/NAME or releases.kapistrano.dev/NAME (pure)."""
    kind, slash, name = arg.rpartition("/")
    if not slash:
        return arg
    if kind.lower() not in _RESOURCE_PREFIXES or not name:
        raise argparse.ArgumentTypeError(f"{arg!r} is not a Release: use NAME or release/NAME")
    return name


def parse_duration(text: str) -> float:
    """Seconds in a kubectl-style duration: 300, 300s, 5m, 1h30m, 1.5s, 500ms (pure)."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 300s, 5m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


# ------------------------------------------------------------------------------------------------
# Pure: reading a Release object
# ------------------------------------------------------------------------------------------------


def status_of(obj: Obj) -> ReleaseStatus | None:
    """The parsed status, or None when the operator has not written one yet (pure)."""
    raw = obj.get("status")
    if not raw:
        return None
    try:
        return ReleaseStatus.model_validate(raw)
    except ValidationError as exc:
        raise PluginError(f"status of the Release is not understood by this plugin: {exc}") from None


def spec_of(obj: Obj) -> Obj:
    """The spec as a dict ({} when absent) (pure)."""
    spec = obj.get("spec") or {}
    return spec if isinstance(spec, dict) else {}


def generation_of(obj: Obj) -> int | None:
    """metadata.generation, if set (pure)."""
    value = (obj.get("metadata") or {}).get("generation")
    return value if isinstance(value, int) else None


def observed(obj: Obj, status: ReleaseStatus | None) -> bool:
    """Whether the status was computed for the current spec (pure)."""
    if status is None or status.observed_generation is None:
        return False
    generation = generation_of(obj)
    return generation is None or status.observed_generation >= generation


def is_true(status: ReleaseStatus, kind: str) -> bool:
    """Whether a condition is present with status True (pure)."""
    condition = status.condition(kind)
    return condition is not None and condition.status == "True"


# ------------------------------------------------------------------------------------------------
# Pure: patches
# ------------------------------------------------------------------------------------------------


def restart_patch(now: datetime) -> Patch:
    """Merge patch that asks for a rolling restart at `now` (pure)."""
    return {"metadata": {"annotations": {RESTART_ANNOTATION: format_time(now)}}}


def retry_patch(now: datetime) -> Patch:
    """Merge patch that asks to try the failed version again (pure)."""
    return {"metadata": {"annotations": {RETRY_ANNOTATION: format_time(now)}}}


def undo_patch(spec: Obj, target: str) -> Patch:
    """Merge patch that rolls spec.version back to `target` (pure).

    A git ref pinned to the current version is moved along, so that a host that has to fetch `target` again
    gets that version's code.
    """
    patch: Patch = {"spec": {"version": target}}
    git = (spec.get("source") or {}).get("git") or {}
    if git.get("ref") is not None and git.get("ref") == spec.get("version"):
        patch["spec"]["source"] = {"git": {"ref": target}}
    return patch


# ------------------------------------------------------------------------------------------------
# Pure: choosing what to undo to
# ------------------------------------------------------------------------------------------------


def known_versions(status: ReleaseStatus | None) -> list[str]:
    """Versions that were fully rolled out: currentVersion, then history newest first, no repeats (pure)."""
    if status is None:
        return []
    found = [status.current_version] if status.current_version else []
    found += [h.version for h in status.history if h.request is None]
    return list(dict.fromkeys(found))


def previous_in_history(status: ReleaseStatus, version: str) -> str | None:
    """The newest history entry older than the newest entry of `version` (any entry if it is absent) (pure)."""
    versions = [h.version for h in status.history if h.request is None]
    start = versions.index(version) + 1 if version in versions else 0
    return next((v for v in versions[start:] if v != version), None)


def undo_target(spec_version: str, status: ReleaseStatus | None, to_version: str | None = None) -> str:
    """The version `undo` rolls back to; raises PluginError when there is nothing to undo (pure)."""
    if to_version is not None:
        return _checked_choice(spec_version, status, to_version)
    if status is not None and status.current_version and status.current_version != spec_version:
        return status.current_version
    target = previous_in_history(status, spec_version) if status is not None else None
    if target is None:
        raise PluginError(f"nothing to undo: no version was rolled out before {spec_version}")
    return target


def _checked_choice(spec_version: str, status: ReleaseStatus | None, to_version: str) -> str:
    """`--to-version`: a version different from spec.version that was rolled out before (pure)."""
    if to_version == spec_version:
        raise PluginError(f"nothing to undo: spec.version is already {to_version}")
    known = known_versions(status)
    if to_version not in known:
        listed = ", ".join(known) if known else "none"
        raise PluginError(f"{to_version} was never rolled out by this Release (known versions: {listed})")
    return to_version


def undo_warnings(obj: Obj, target: str) -> list[str]:
    """Things the user should know before an undo takes effect (pure)."""
    warnings: list[str] = []
    metadata = obj.get("metadata") or {}
    marks = {**(metadata.get("labels") or {}), **(metadata.get("annotations") or {})}
    if any(marker in marks for marker in GITOPS_MARKERS):
        warnings.append("this Release is managed by a GitOps tool: its next sync sets spec.version back; revert in git")
    source = spec_of(obj).get("source") or {}
    kind = next((k for k in ("archive", "path") if source.get(k)), None)
    if kind is not None:
        warnings.append(
            f"spec.source.{kind} is unchanged: hosts that no longer keep a release of {target} "
            f"would deploy what spec.source.{kind} names"
        )
    return warnings


# ------------------------------------------------------------------------------------------------
# Pure: verdicts for status and wait
# ------------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    """Where a rollout stands, for `status` and `wait`."""

    DONE = "done"
    FAILED = "failed"
    WAITING = "waiting"
    PAUSED = "paused"


@dataclass(frozen=True)
class Verdict:
    """An outcome and the message that explains it."""

    outcome: Outcome
    message: str


def verdict(obj: Obj, goal: str = "ready") -> Verdict:
    """Whether the Release reached `goal` (ready or complete), failed, or is still on its way (pure)."""
    status = status_of(obj)
    if status is None or not observed(obj, status):
        return Verdict(Outcome.WAITING, f"waiting for the operator to observe generation {generation_of(obj)}")
    stalled = status.condition("Stalled")
    if stalled is not None and stalled.status == "True":
        return Verdict(Outcome.FAILED, f"{stalled.reason}: {stalled.message}" if stalled.message else stalled.reason)
    if not is_true(status, "Ready"):
        return Verdict(Outcome.WAITING, _progress_message(status))
    if goal == "complete":
        missing = _incomplete(obj, status)
        if missing:
            return Verdict(Outcome.WAITING, missing)
    return Verdict(Outcome.DONE, f"{status.version or spec_of(obj).get('version')} is ready on {status.ready} hosts")


def _progress_message(status: ReleaseStatus) -> str:
    """What the operator says it is doing (pure)."""
    ready = status.condition("Ready")
    return status.message or (ready.message if ready is not None else "") or f"phase {status.phase}"


def _incomplete(obj: Obj, status: ReleaseStatus) -> str:
    """Why a ready Release is not complete yet, or "" (pure)."""
    if status.hosts_available < status.hosts_total:
        return f"{status.hosts_available}/{status.hosts_total} hosts available"
    if is_true(status, "Reconciling"):
        return _progress_message(status)
    requested = ((obj.get("metadata") or {}).get("annotations") or {}).get(RESTART_ANNOTATION)
    if requested is not None and requested != status.restarted_at:
        return f"restart requested at {requested} is not done yet"
    return ""


# ------------------------------------------------------------------------------------------------
# Pure: formatting
# ------------------------------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like kubectl's tables, no trailing spaces (pure)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _condition_row(condition: Condition) -> list[str]:
    """One line of the conditions table (pure)."""
    return [condition.type, condition.status, condition.reason, condition.message]


def format_status(obj: Obj) -> str:
    """The `status` report: summary, hosts, conditions and history (pure)."""
    metadata = obj.get("metadata") or {}
    spec = spec_of(obj)
    where = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
    status = status_of(obj)
    if status is None:
        return f"Release {where}: version {spec.get('version')}, no status yet (waiting for the operator)"
    lines = [_summary(where, spec, status), *_notes(obj, spec, status)]
    if status.hosts:
        rows = [[h.name, h.phase, h.version or "-", "yes" if h.ready else "no", h.message] for h in status.hosts]
        lines += ["", format_table(["HOST", "PHASE", "VERSION", "READY", "MESSAGE"], rows)]
    if status.conditions:
        rows = [_condition_row(c) for c in status.conditions]
        lines += ["", format_table(["CONDITION", "STATUS", "REASON", "MESSAGE"], rows)]
    if status.history:
        lines += ["", "History: " + ", ".join(_history_item(h) for h in status.history)]
    return "\n".join(lines)


def _history_item(entry: HistoryEntry) -> str:
    """One history entry: a version rolled out, or a request with who asked and why (pure)."""
    if entry.request is None:
        return f"{entry.version} ({entry.completed_at})"
    why = f", {entry.reason}" if entry.reason else ""
    return f"{entry.request} of {entry.version} by {entry.requested_by or 'unknown'}{why} ({entry.completed_at})"


def _summary(where: str, spec: Obj, status: ReleaseStatus) -> str:
    """First line of the status report (pure)."""
    current = f" (current {status.current_version})" if status.current_version else ""
    return f"Release {where}: version {spec.get('version')}{current}, phase {status.phase}, ready {status.ready}"


def _notes(obj: Obj, spec: Obj, status: ReleaseStatus) -> list[str]:
    """Lines under the summary: message, staleness, pause, failed version (pure)."""
    notes = [status.message] if status.message else []
    if not observed(obj, status):
        notes.append(
            f"status is for generation {status.observed_generation}, spec is at generation {generation_of(obj)} "
            "(waiting for the operator)"
        )
    requested = ((obj.get("metadata") or {}).get("annotations") or {}).get(PAUSE_ANNOTATION)
    if requested:
        notes.append(f"paused by request ({PAUSE_ANNOTATION}={requested}); `kubectl kapistrano resume` continues")
    if spec.get("paused"):
        notes.append("paused (spec.paused): set it to false in the manifest to continue")
    elif (spec.get("strategy") or {}).get("pauseAfterHosts") is not None and status.phase == "Paused":
        notes.append("stopped at the canary (spec.strategy.pauseAfterHosts); `kubectl kapistrano resume` continues")
    if status.failed_version:
        notes.append(f"failed version: {status.failed_version}; `kubectl kapistrano retry` tries it again")
    if status.retries:
        notes.append(f"retried {status.retries} time(s), last at the request {status.retried_for}")
    return notes


# ------------------------------------------------------------------------------------------------
# Subcommands (args, Releases) -> exit code
# ------------------------------------------------------------------------------------------------


def say(text: str) -> None:
    """Print to stdout."""
    print(text)


def warn(text: str) -> None:
    """Print a warning to stderr."""
    print(f"warning: {text}", file=sys.stderr)


def cmd_status(args: argparse.Namespace, releases: Releases) -> int:
    """Print hosts and conditions; 0 when Ready=True for the current generation."""
    obj = releases.get(args.name)
    try:
        say(format_status(with_role(obj, args.role) if args.role else obj))
    except NoSuchRole as exc:
        raise PluginError(str(exc)) from None
    return 0 if verdict(obj).outcome == Outcome.DONE else 1


def cmd_undo(args: argparse.Namespace, releases: Releases) -> int:
    """Roll back: an abort request while a rollout is under way, else spec.version back (calls the API)."""
    obj = releases.get(args.name)
    spec = spec_of(obj)
    if args.to_version is None and requests.rolling_out(spec, status_of(obj)):
        return requests.cmd_abort(args, releases)
    target = undo_target(str(spec.get("version")), status_of(obj), args.to_version)
    for line in undo_warnings(obj, target):
        warn(line)
    releases.patch(args.name, undo_patch(spec, target))
    say(f"release.{GROUP}/{args.name} rolled back from {spec.get('version')} to {target}")
    return 0


def cmd_restart(args: argparse.Namespace, releases: Releases) -> int:
    """Stamp the restart annotation with the current UTC time."""
    patch = restart_patch(datetime.now(UTC))
    releases.patch(args.name, patch)
    stamp = patch["metadata"]["annotations"][RESTART_ANNOTATION]
    say(f"release.{GROUP}/{args.name} restarted ({RESTART_ANNOTATION}={stamp})")
    return 0


def cmd_retry(args: argparse.Namespace, releases: Releases) -> int:
    """Stamp the retry annotation with the current UTC time; says when nothing has failed."""
    status = status_of(releases.get(args.name))
    if status is None or not (status.failed_version or status.aborted_version):
        warn("no failed or aborted version in the status: the request is recorded and changes nothing now")
    patch = retry_patch(datetime.now(UTC))
    releases.patch(args.name, patch)
    stamp = patch["metadata"]["annotations"][RETRY_ANNOTATION]
    say(f"release.{GROUP}/{args.name} retry requested ({RETRY_ANNOTATION}={stamp})")
    return 0


def cmd_logs(args: argparse.Namespace, releases: Releases) -> int:
    """Tail a service's log on every host of the Release (calls the API, SSH)."""
    from kapistrano.cli.plugin_logs import cmd_logs as tail  # noqa: PLC0415  (SSH libraries only when needed)

    return tail(args, releases)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kubectl-kapistrano` console script."""
    from kapistrano.cli.plugin_main import main as run  # noqa: PLC0415  (the commands import this module)

    return run(argv)
