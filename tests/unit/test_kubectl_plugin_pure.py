"""The pure parts of `kubectl kapistrano`: arguments, patches, the undo target, verdicts and the status report."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import pytest
from kapistrano.api.status import ReleaseStatus
from kapistrano.cli import kubectl_plugin as kp
from kapistrano.cli import plugin_main
from kapistrano.cli import plugin_requests as rq


def condition(kind: str, status: str, reason: str = "AsExpected", message: str = "") -> dict[str, Any]:
    """A metav1.Condition as the operator writes it."""
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 3,
        "lastTransitionTime": "2026-11-28T02:01:09Z",
    }


def history(*versions: str) -> list[dict[str, str]]:
    """History entries, newest first."""
    return [{"version": v, "completedAt": f"2026-11-{27 - i:02d}T10:00:00Z"} for i, v in enumerate(versions)]


def status(**fields: Any) -> ReleaseStatus:
    """A parsed status."""
    return ReleaseStatus.model_validate(fields)


def release(spec: dict[str, Any] | None = None, generation: int = 3, **status_fields: Any) -> dict[str, Any]:
    """A Release object with a status observed at generation 3 (no status when no fields are given)."""
    obj: dict[str, Any] = {
        "apiVersion": "kapistrano.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "billing", "namespace": "deploy", "generation": generation},
        "spec": {"application": "billing", "version": "v3", **(spec or {})},
    }
    if status_fields:
        obj["status"] = {"observedGeneration": 3, **status_fields}
    return obj


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "name"),
    [
        ("billing", "billing"),
        ("release/billing", "billing"),
        ("rel/billing", "billing"),
        ("releases.kapistrano.dev/billing", "billing"),
        ("Release/billing", "billing"),
    ],
)
def test_release_name(arg: str, name: str) -> None:
    assert kp.release_name(arg) == name


@pytest.mark.parametrize("arg", ["deployment/billing", "release/", "pods.v1/billing"])
def test_release_name_rejects_other_kinds(arg: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a Release"):
        kp.release_name(arg)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300", 300.0), ("300s", 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("500ms", 0.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert kp.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "5m junk", "-5s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        kp.parse_duration(text)


def test_parser_wires_every_command() -> None:
    parser = plugin_main.build_parser()
    args = parser.parse_args(["wait", "release/billing", "-n", "deploy", "--for", "complete", "--timeout", "2m"])
    assert (args.command, args.name, args.namespace, args.goal, args.timeout) == (
        "wait",
        "billing",
        "deploy",
        "complete",
        120.0,
    )
    assert parser.parse_args(["undo", "billing", "--to-version", "v1"]).to_version == "v1"
    expected = {"status", "pause", "resume", "promote", "abort", "undo", "restart", "retry", "wait", "logs", "unlock"}
    assert expected | {"lock"} <= set(plugin_main.COMMANDS)
    logs = parser.parse_args(["logs", "billing", "sidekiq", "-n", "deploy", "-f", "--tail", "5", "--hosts", "w1,w2"])
    assert (logs.service, logs.namespace, logs.follow, logs.lines, logs.hosts) == (
        "sidekiq",
        "deploy",
        True,
        5,
        ["w1", "w2"],
    )
    unlock = parser.parse_args(["unlock", "billing", "--host", "web-1", "--yes"])
    assert (unlock.host, unlock.yes) == (["web-1"], True)
    taken = parser.parse_args(["lock", "acquire", "release/billing", "--hosts", "w1", "-m", "pg upgrade"])
    assert (taken.command, taken.lock_action, taken.name, taken.hosts, taken.message) == (
        "lock",
        "acquire",
        "billing",
        "w1",
        "pg upgrade",
    )
    assert parser.parse_args(["lock", "release", "billing", "--yes"]).yes


# ------------------------------------------------------------------------------------------------
# patches
# ------------------------------------------------------------------------------------------------


MOMENT = datetime(2026, 11, 28, 2, 1, 9, tzinfo=UTC)


def test_pause_is_an_annotation_never_a_spec_edit() -> None:
    assert rq.pause_patch(MOMENT, "incident 42") == {
        "metadata": {
            "annotations": {"kapistrano.dev/pause": "2026-11-28T02:01:09Z", "kapistrano.dev/reason": "incident 42"}
        }
    }


def test_resume_removes_the_pause_and_blanks_an_old_reason() -> None:
    assert rq.resume_patch(MOMENT) == {
        "metadata": {"annotations": {"kapistrano.dev/pause": None, "kapistrano.dev/reason": ""}}
    }


def test_resume_at_a_canary_stop_promotes() -> None:
    annotations = rq.resume_patch(MOMENT, at_canary=True)["metadata"]["annotations"]
    assert annotations["kapistrano.dev/promote"] == "2026-11-28T02:01:09Z"


@pytest.mark.parametrize(("make", "key"), [(rq.promote_patch, "promote"), (rq.abort_patch, "abort")])
def test_promote_and_abort_are_timestamped_annotations(make: Any, key: str) -> None:
    patch = make(MOMENT, "why")
    assert patch == {
        "metadata": {"annotations": {f"kapistrano.dev/{key}": "2026-11-28T02:01:09Z", "kapistrano.dev/reason": "why"}}
    }
    assert "spec" not in patch


def test_at_canary_only_when_held_by_pause_after_hosts() -> None:
    paused = ReleaseStatus.model_validate({"phase": "Paused"})
    assert rq.at_canary({"strategy": {"pauseAfterHosts": 1}}, paused)
    assert not rq.at_canary({"paused": True, "strategy": {"pauseAfterHosts": 1}}, paused)
    assert not rq.at_canary({"strategy": {}}, paused)


def test_restart_patch_is_rfc3339_utc() -> None:
    moment = datetime(2026, 11, 28, 2, 1, 9, 123456, tzinfo=UTC)
    assert kp.restart_patch(moment) == {
        "metadata": {"annotations": {"kapistrano.dev/restartedAt": "2026-11-28T02:01:09Z"}}
    }


def test_retry_patch_stamps_the_retry_annotation() -> None:
    moment = datetime(2026, 11, 28, 2, 1, 9, tzinfo=UTC)
    assert kp.retry_patch(moment) == {"metadata": {"annotations": {"kapistrano.dev/retry": "2026-11-28T02:01:09Z"}}}


def test_undo_patch_sets_the_version() -> None:
    spec = {"version": "v3", "source": {"git": {"url": "https://git.example.com/b.git"}}}
    assert kp.undo_patch(spec, "v2") == {"spec": {"version": "v2"}}


def test_undo_patch_moves_a_ref_pinned_to_the_version() -> None:
    spec = {"version": "v3", "source": {"git": {"url": "https://git.example.com/b.git", "ref": "v3"}}}
    assert kp.undo_patch(spec, "v2") == {"spec": {"version": "v2", "source": {"git": {"ref": "v2"}}}}


def test_undo_patch_keeps_a_branch_ref() -> None:
    spec = {"version": "v3", "source": {"git": {"url": "https://git.example.com/b.git", "ref": "main"}}}
    assert kp.undo_patch(spec, "v2") == {"spec": {"version": "v2"}}


# ------------------------------------------------------------------------------------------------
# undo target
# ------------------------------------------------------------------------------------------------


def test_undo_mid_rollout_goes_back_to_the_current_version() -> None:
    assert kp.undo_target("v3", status(currentVersion="v2", history=history("v2", "v1"))) == "v2"


def test_undo_after_a_rollout_takes_the_entry_before_it() -> None:
    assert kp.undo_target("v3", status(currentVersion="v3", history=history("v3", "v2", "v1"))) == "v2"


def test_undo_skips_repeats_of_the_current_version() -> None:
    assert kp.undo_target("v3", status(currentVersion="v3", history=history("v3", "v3", "v1"))) == "v1"


def test_undo_uses_the_newest_entry_of_the_version() -> None:
    # v1 -> v2 -> v1 (an earlier undo) : undoing v1 goes back to v2, not to what came before the first v1.
    assert kp.undo_target("v1", status(currentVersion="v1", history=history("v1", "v2", "v1", "v0"))) == "v2"


def test_undo_when_the_version_is_missing_from_history() -> None:
    assert kp.undo_target("v3", status(history=history("v2", "v1"))) == "v2"


@pytest.mark.parametrize(
    "observed",
    [
        pytest.param(None, id="no-status"),
        pytest.param(status(), id="empty-status"),
        pytest.param(status(currentVersion="v3", history=history("v3")), id="first-version"),
    ],
)
def test_nothing_to_undo(observed: ReleaseStatus | None) -> None:
    with pytest.raises(kp.PluginError, match="nothing to undo: no version was rolled out before v3"):
        kp.undo_target("v3", observed)


def test_undo_to_a_chosen_version() -> None:
    assert kp.undo_target("v3", status(currentVersion="v3", history=history("v3", "v2", "v1")), "v1") == "v1"


def test_undo_to_the_current_version_while_rolling_out() -> None:
    assert kp.undo_target("v3", status(currentVersion="v2"), "v2") == "v2"


def test_undo_to_the_same_version() -> None:
    with pytest.raises(kp.PluginError, match="already v3"):
        kp.undo_target("v3", status(currentVersion="v3", history=history("v3", "v2")), "v3")


def test_undo_to_an_unknown_version() -> None:
    with pytest.raises(kp.PluginError, match=r"v9 was never rolled out .*known versions: v3, v2\)"):
        kp.undo_target("v3", status(currentVersion="v3", history=history("v3", "v2")), "v9")
    with pytest.raises(kp.PluginError, match=r"known versions: none"):
        kp.undo_target("v3", None, "v9")


def test_undo_warnings() -> None:
    plain = release({"source": {"git": {"url": "https://x/y.git"}}})
    assert kp.undo_warnings(plain, "v2") == []
    gitops = release({"source": {"git": {"url": "https://x/y.git"}}})
    gitops["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": "billing:kapistrano.dev/Release:deploy/billing"
    }
    assert [w.split(":")[0] for w in kp.undo_warnings(gitops, "v2")] == ["this Release is managed by a GitOps tool"]
    archive = release({"source": {"archive": {"url": "https://x/b-3.tgz", "sha256": "0" * 64}}})
    (warning,) = kp.undo_warnings(archive, "v2")
    assert "spec.source.archive is unchanged" in warning


# ------------------------------------------------------------------------------------------------
# verdicts
# ------------------------------------------------------------------------------------------------

READY = condition("Ready", "True", "Ready", "3/3 hosts ready")
NOT_READY = condition("Ready", "False", "RollingOut", "1/3 hosts updated")
RECONCILING = condition("Reconciling", "True", "RollingOut")
DONE_RECONCILING = condition("Reconciling", "False", "Ready")
STALLED = condition("Stalled", "True", "HostFailed", "worker-2 failed; rolled back")
NOT_STALLED = condition("Stalled", "False")
COMPLETE = {"hostsTotal": 3, "hostsAvailable": 3, "ready": "3/3", "version": "v3"}


@pytest.mark.parametrize(
    ("obj", "goal", "outcome", "message"),
    [
        pytest.param(release(), "ready", "waiting", "waiting for the operator to observe generation 3", id="no-status"),
        pytest.param(
            release(generation=4, conditions=[READY]),
            "ready",
            "waiting",
            "waiting for the operator to observe generation 4",
            id="old-generation",
        ),
        pytest.param(
            release(conditions=[NOT_READY, STALLED]),
            "ready",
            "failed",
            "HostFailed: worker-2 failed; rolled back",
            id="stalled",
        ),
        pytest.param(
            release(conditions=[condition("Stalled", "True", "InvalidSpec")]),
            "ready",
            "failed",
            "InvalidSpec",
            id="stalled-bare",
        ),
        pytest.param(
            release(message="restarting worker-2", conditions=[NOT_READY, NOT_STALLED]),
            "ready",
            "waiting",
            "restarting worker-2",
            id="rolling",
        ),
        pytest.param(release(conditions=[NOT_READY]), "ready", "waiting", "1/3 hosts updated", id="ready-message"),
        pytest.param(release(phase="Pending"), "ready", "waiting", "phase Pending", id="bare"),
        pytest.param(
            release(conditions=[READY, NOT_STALLED], **COMPLETE),
            "ready",
            "done",
            "v3 is ready on 3/3 hosts",
            id="ready",
        ),
        pytest.param(
            release(conditions=[READY, DONE_RECONCILING], **COMPLETE),
            "complete",
            "done",
            "v3 is ready on 3/3 hosts",
            id="complete",
        ),
        pytest.param(
            release(conditions=[READY], **{**COMPLETE, "hostsAvailable": 2}),
            "complete",
            "waiting",
            "2/3 hosts available",
            id="not-available",
        ),
        pytest.param(
            release(message="holding minReadySeconds", conditions=[READY, RECONCILING], **COMPLETE),
            "complete",
            "waiting",
            "holding minReadySeconds",
            id="reconciling",
        ),
    ],
)
def test_verdict(obj: dict[str, Any], goal: str, outcome: str, message: str) -> None:
    assert kp.verdict(obj, goal) == kp.Verdict(kp.Outcome(outcome), message)


def test_complete_waits_for_the_restart_request() -> None:
    obj = release(conditions=[READY], restartedAt="2026-11-28T01:00:00Z", **COMPLETE)
    obj["metadata"]["annotations"] = {"kapistrano.dev/restartedAt": "2026-11-28T02:00:00Z"}
    assert kp.verdict(obj, "ready").outcome == kp.Outcome.DONE
    assert kp.verdict(obj, "complete") == kp.Verdict(
        kp.Outcome.WAITING, "restart requested at 2026-11-28T02:00:00Z is not done yet"
    )
    obj["status"]["restartedAt"] = "2026-11-28T02:00:00Z"
    assert kp.verdict(obj, "complete").outcome == kp.Outcome.DONE


def test_unreadable_status_is_a_clear_error() -> None:
    with pytest.raises(kp.PluginError, match="not understood"):
        kp.verdict(release(phase="Exploded"))


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------


def test_format_table_pads_columns_without_trailing_spaces() -> None:
    table = kp.format_table(["HOST", "READY", "MESSAGE"], [["worker-10", "yes", ""], ["w1", "no", "down"]])
    assert table.splitlines() == [
        "HOST        READY   MESSAGE",
        "worker-10   yes",
        "w1          no      down",
    ]


def test_format_status_without_status() -> None:
    assert kp.format_status(release()) == "Release deploy/billing: version v3, no status yet (waiting for the operator)"


def test_format_status_report() -> None:
    obj = release(
        {"paused": True},
        generation=4,
        phase="Paused",
        currentVersion="v2",
        failedVersion="v2.9",
        retries=2,
        retriedFor="2026-11-28T02:01:09Z",
        ready="1/2",
        message="paused after worker-1",
        hosts=[
            {"name": "worker-1", "phase": "Ready", "version": "v3", "ready": True},
            {"name": "worker-2", "phase": "Pending", "message": "waiting for worker-1"},
        ],
        conditions=[NOT_READY, condition("Reconciling", "True", "Paused")],
        history=history("v2"),
    )
    assert kp.format_status(obj).splitlines() == [
        "Release deploy/billing: version v3 (current v2), phase Paused, ready 1/2",
        "paused after worker-1",
        "status is for generation 3, spec is at generation 4 (waiting for the operator)",
        "paused (spec.paused): set it to false in the manifest to continue",
        "failed version: v2.9; `kubectl kapistrano retry` tries it again",
        "retried 2 time(s), last at the request 2026-11-28T02:01:09Z",
        "",
        "HOST       PHASE     VERSION   READY   MESSAGE",
        "worker-1   Ready     v3        yes",
        "worker-2   Pending   -         no      waiting for worker-1",
        "",
        "CONDITION     STATUS   REASON       MESSAGE",
        "Ready         False    RollingOut   1/3 hosts updated",
        "Reconciling   True     Paused",
        "",
        "History: v2 (2026-11-27T10:00:00Z)",
    ]


def test_format_status_canary_stop() -> None:
    obj = release({"strategy": {"pauseAfterHosts": 1}}, phase="Paused", conditions=[NOT_READY])
    assert "stopped at the canary (spec.strategy.pauseAfterHosts)" in kp.format_status(obj)
