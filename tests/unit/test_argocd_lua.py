"""The Argo CD health check and actions for Release, run in Lua 5.1 (Argo CD's dialect) the way Argo CD runs them."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ARGOCD = Path(__file__).resolve().parents[2] / "manifests" / "argocd"
HEALTH = ARGOCD / "health.lua"
DISCOVERY = ARGOCD / "actions" / "discovery.lua"
ACTIONS = ("pause", "resume", "promote", "abort", "restart")


def to_lua(runtime: Any, value: Any) -> Any:
    """A Python value as Argo CD hands it to Lua: objects and arrays become tables (arrays 1-based)."""
    if isinstance(value, dict | list):
        return runtime.table_from(value, recursive=True)
    return value


def from_lua(value: Any) -> Any:
    """A Lua value back in Python: tables with keys 1..n become lists, other tables dicts."""
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and set(items) == set(range(1, len(items) + 1)):
        return [from_lua(items[i]) for i in range(1, len(items) + 1)]
    return {key: from_lua(item) for key, item in items.items()}


def run(script: Path, obj: dict[str, Any]) -> Any:
    """Run a script with the global `obj` set, as Argo CD does, and return its result as Python."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals()["obj"] = to_lua(runtime, copy.deepcopy(obj))
    return from_lua(runtime.execute(script.read_text()))


def condition(kind: str, status: str, reason: str = "AsExpected", message: str = "") -> dict[str, Any]:
    """A metav1.Condition for generation 3."""
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 3,
        "lastTransitionTime": "2026-11-28T02:01:09Z",
    }


def release(status: dict[str, Any] | None = None, *, generation: int = 3, **spec_extra: Any) -> dict[str, Any]:
    """A Release object as Argo CD sees it live."""
    obj: dict[str, Any] = {
        "apiVersion": "kapistrano.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "billing", "namespace": "deploy", "generation": generation},
        "spec": {
            "application": "billing",
            "version": "v2",
            "hosts": [{"name": "worker-1", "address": "10.0.0.11"}],
            "strategy": {"maxUnavailable": 1},
            **spec_extra,
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def status_of(
    *conditions: dict[str, Any], phase: str = "Progressing", message: str = "", **extra: Any
) -> dict[str, Any]:
    """A status observed at generation 3."""
    return {"observedGeneration": 3, "phase": phase, "message": message, "conditions": list(conditions), **extra}


READY = condition("Ready", "True", "Ready", "3/3 hosts ready on v2")
NOT_READY = condition("Ready", "False", "RollingOut", "1/3 hosts updated")
STALLED = condition("Stalled", "True", "HostFailed", "worker-2: sneakers not ready; rolled back to v1")
NOT_STALLED = condition("Stalled", "False")


# ------------------------------------------------------------------------------------------------
# health.lua
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "health", "message"),
    [
        pytest.param(release(), "Progressing", "waiting for the operator", id="no-status"),
        pytest.param(release({}), "Progressing", "waiting for the operator", id="empty-status"),
        pytest.param(
            release(status_of(READY), generation=4), "Progressing", "waiting for the operator", id="old-generation"
        ),
        pytest.param(
            release(status_of(READY, STALLED, phase="Failed", message="rollout failed")),
            "Degraded",
            "worker-2: sneakers not ready; rolled back to v1",
            id="stalled",
        ),
        pytest.param(
            release(status_of(condition("Stalled", "True", "InvalidSpec")), paused=True),
            "Degraded",
            "InvalidSpec",
            id="stalled-without-message-wins-over-paused",
        ),
        pytest.param(
            release(status_of(NOT_READY, NOT_STALLED, phase="Paused", message="paused by spec.paused"), paused=True),
            "Suspended",
            "paused by spec.paused",
            id="spec-paused",
        ),
        pytest.param(
            release(status_of(READY, NOT_STALLED, phase="Ready"), paused=True),
            "Healthy",
            "3/3 hosts ready on v2",
            id="spec-paused-while-ready-is-ready",
        ),
        pytest.param(
            release(status_of(NOT_READY, phase="Paused", message="canary: paused after 1 host")),
            "Suspended",
            "canary: paused after 1 host",
            id="canary-phase-paused",
        ),
        pytest.param(
            release(status_of(READY, NOT_STALLED, phase="Ready", message="rolled out")),
            "Healthy",
            "3/3 hosts ready on v2",
            id="ready",
        ),
        pytest.param(
            release(status_of(condition("Ready", "True", "Ready"), phase="Ready", message="rolled out")),
            "Healthy",
            "rolled out",
            id="ready-without-message",
        ),
        pytest.param(
            release(status_of(NOT_READY, NOT_STALLED, message="restarting worker-2: sneakers stopping (pid 4242)")),
            "Progressing",
            "restarting worker-2: sneakers stopping (pid 4242)",
            id="rolling-out",
        ),
        pytest.param(
            release(status_of(condition("Ready", "Unknown", "Reconciling")), paused=False),
            "Progressing",
            "rolling out",
            id="ready-unknown",
        ),
        pytest.param(release(status_of(phase="Pending")), "Progressing", "rolling out", id="no-conditions"),
    ],
)
def test_health(obj: dict[str, Any], health: str, message: str) -> None:
    assert run(HEALTH, obj) == {"status": health, "message": message}


def test_health_tolerates_a_missing_generation() -> None:
    obj = release(status_of(READY))
    del obj["metadata"]["generation"]
    assert run(HEALTH, obj)["status"] == "Healthy"


def test_health_needs_an_observed_generation() -> None:
    status = status_of(READY)
    del status["observedGeneration"]
    assert run(HEALTH, release(status))["status"] == "Progressing"


# ------------------------------------------------------------------------------------------------
# actions
# ------------------------------------------------------------------------------------------------


def enabled(obj: dict[str, Any]) -> set[str]:
    """The actions discovery.lua offers (not disabled) for an object."""
    found = run(DISCOVERY, obj)
    assert set(found) == set(ACTIONS)
    return {name for name, flags in found.items() if not flags.get("disabled", False)}


def annotated(obj: dict[str, Any], **annotations: str) -> dict[str, Any]:
    """The object with kapistrano.dev/<key> annotations."""
    obj["metadata"]["annotations"] = {f"kapistrano.dev/{k}": v for k, v in annotations.items()}
    return obj


ROLLING_OUT = status_of(NOT_READY) | {"currentVersion": "v1"}
STAMP = "2026-11-28T02:01:09Z"


@pytest.mark.parametrize(
    ("obj", "offered"),
    [
        pytest.param(release(), {"pause", "restart"}, id="running-no-status"),
        pytest.param(release(status_of(READY), paused=False), {"pause", "restart"}, id="running"),
        pytest.param(release(ROLLING_OUT), {"pause", "abort", "restart"}, id="rolling-out"),
        pytest.param(
            annotated(release(status_of(NOT_READY, phase="Paused")), pause=STAMP),
            {"resume", "restart"},
            id="paused-by-request",
        ),
        pytest.param(
            release(status_of(NOT_READY, phase="Paused"), paused=True),
            {"pause", "resume", "restart"},
            id="paused-in-git",
        ),
        pytest.param(
            release(status_of(NOT_READY, phase="Paused"), strategy={"pauseAfterHosts": 1}),
            {"pause", "resume", "promote", "restart"},
            id="canary-stop",
        ),
    ],
)
def test_discovery(obj: dict[str, Any], offered: set[str]) -> None:
    assert enabled(obj) == offered


def test_every_discovered_action_has_a_script() -> None:
    assert {p.parent.name for p in (ARGOCD / "actions").glob("*/action.lua")} == set(ACTIONS)


@pytest.mark.parametrize("action", ["pause", "promote", "abort"])
def test_a_request_action_stamps_its_annotation_and_never_edits_the_spec(action: str) -> None:
    obj = release(status_of(NOT_READY), strategy={"maxUnavailable": 1, "pauseAfterHosts": 1})
    result = run(ARGOCD / "actions" / action / "action.lua", obj)
    annotations = result["metadata"]["annotations"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", annotations[f"kapistrano.dev/{action}"])
    assert annotations["kapistrano.dev/reason"] == f"Argo CD action {action}"
    assert result["spec"] == obj["spec"]


def test_resume_removes_the_pause_request_and_leaves_the_spec() -> None:
    obj = annotated(release(status_of(NOT_READY, phase="Paused"), paused=True), pause=STAMP, team="billing")
    result = run(ARGOCD / "actions" / "resume" / "action.lua", obj)
    assert result["metadata"]["annotations"] == {
        "kapistrano.dev/team": "billing",
        "kapistrano.dev/reason": "Argo CD action resume",
    }
    assert result["spec"] == obj["spec"]


def test_resume_at_a_canary_stop_promotes() -> None:
    obj = release(status_of(NOT_READY, phase="Paused"), strategy={"maxUnavailable": 1, "pauseAfterHosts": 1})
    result = run(ARGOCD / "actions" / "resume" / "action.lua", obj)
    assert "kapistrano.dev/promote" in result["metadata"]["annotations"]
    assert result["spec"] == obj["spec"]


@pytest.mark.parametrize(
    "annotations", [None, {"team": "billing", "kapistrano.dev/restartedAt": "2020-01-01T00:00:00Z"}]
)
def test_restart_stamps_the_annotation(annotations: dict[str, str] | None) -> None:
    obj = release(status_of(READY))
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    result = run(ARGOCD / "actions" / "restart" / "action.lua", obj)
    stamped = result["metadata"]["annotations"].pop("kapistrano.dev/restartedAt")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamped)
    assert stamped != "2020-01-01T00:00:00Z"
    assert result["metadata"]["annotations"] == {k: v for k, v in (annotations or {}).items() if k == "team"}
    assert result["spec"] == obj["spec"]


# ------------------------------------------------------------------------------------------------
# argocd-cm-patch.yaml
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def argocd_cm() -> dict[str, Any]:
    """The ConfigMap patch that installs the scripts."""
    loaded: dict[str, Any] = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    return loaded


def test_cm_patch_targets_argocd_cm(argocd_cm: dict[str, Any]) -> None:
    assert (argocd_cm["apiVersion"], argocd_cm["kind"]) == ("v1", "ConfigMap")
    assert argocd_cm["metadata"]["name"] == "argocd-cm"


def test_cm_patch_health_is_health_lua(argocd_cm: dict[str, Any]) -> None:
    assert argocd_cm["data"]["resource.customizations.health.kapistrano.dev_Release"] == HEALTH.read_text()


def test_cm_patch_actions_are_the_action_scripts(argocd_cm: dict[str, Any]) -> None:
    actions = yaml.safe_load(argocd_cm["data"]["resource.customizations.actions.kapistrano.dev_Release"])
    assert actions["discovery.lua"] == DISCOVERY.read_text()
    scripts = {d["name"]: d["action.lua"] for d in actions["definitions"]}
    assert scripts == {name: (ARGOCD / "actions" / name / "action.lua").read_text() for name in ACTIONS}
