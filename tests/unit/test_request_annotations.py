"""Requests read from annotations: who asked comes from managedFields, why from kapistrano.dev/reason."""

from __future__ import annotations

from typing import Any

from kapistrano.api.status import HistoryEntry, RequestKind
from kapistrano.engine.notes import request_line
from kapistrano.k8s.requests import manager_of, requests_of


def owned(manager: str, time: str, *keys: str) -> dict[str, Any]:
    """A managedFields entry owning some annotations."""
    annotations = {f"f:{key}": {} for key in keys}
    return {
        "manager": manager,
        "operation": "Update",
        "time": time,
        "fieldsV1": {"f:metadata": {"f:annotations": annotations}},
    }


BODY = {
    "metadata": {
        "annotations": {"kapistrano.dev/promote": "t2", "kapistrano.dev/reason": "canary fine", "team": "a"},
        "managedFields": [
            {"manager": "argocd-controller", "operation": "Apply", "time": "2026-11-28T01:00:00Z",
             "fieldsV1": {"f:spec": {"f:version": {}}}},
            owned("kubectl-client-side-apply", "2026-11-28T01:00:00Z", "team"),
            owned("kubectl-kapistrano", "2026-11-28T02:00:00Z", "kapistrano.dev/promote", "kapistrano.dev/reason"),
        ],
    }
}  # fmt: skip


def test_who_asked_is_the_manager_that_set_the_annotation() -> None:
    assert manager_of(BODY["metadata"], "kapistrano.dev/promote") == "kubectl-kapistrano"
    assert manager_of(BODY["metadata"], "team") == "kubectl-client-side-apply"
    assert manager_of(BODY["metadata"], "kapistrano.dev/abort") == ""


def test_the_newest_owner_wins() -> None:
    meta = {"managedFields": [owned("a", "2026-11-28T03:00:00Z", "k"), owned("b", "2026-11-28T02:00:00Z", "k")]}
    assert manager_of(meta, "k") == "a"


def test_requests_of_a_release() -> None:
    asked = requests_of(BODY)
    assert asked.promote is not None
    assert (asked.promote.token, asked.promote.by, asked.promote.reason) == ("t2", "kubectl-kapistrano", "canary fine")
    assert asked.pause is None
    assert asked.abort is None
    assert asked.resume.by == "kubectl-kapistrano"


def test_the_revisions_log_line_says_who_what_why() -> None:
    entry = HistoryEntry(version="v2", completed_at="2026-11-28T02:00:00Z", request=RequestKind.ABORT,
                         requested_by="argocd-server", reason="errors up", message="version v2 aborted")  # fmt: skip
    assert request_line(entry) == "argocd-server requested Abort of v2 (errors up): version v2 aborted"
