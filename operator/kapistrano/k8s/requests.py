"""Requests read from a Release's annotations, with who asked (managedFields) and why (kapistrano.dev/reason)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kapistrano.api.release import (
    ABORT_ANNOTATION,
    PAUSE_ANNOTATION,
    PROMOTE_ANNOTATION,
    REASON_ANNOTATION,
    RETRY_ANNOTATION,
)
from kapistrano.plan.requests import Request, Requests

#: The annotations whose changes wake a Release's daemon, besides restart and retry.
REQUEST_ANNOTATIONS = (PAUSE_ANNOTATION, PROMOTE_ANNOTATION, ABORT_ANNOTATION)


def manager_of(meta: Mapping[str, Any], annotation: str) -> str:
    """The field manager that last set `annotation` (managedFields), "" when none says so (pure)."""
    key = f"f:{annotation}"
    owners = [
        entry
        for entry in meta.get("managedFields") or []
        if key in (((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {})
    ]
    if not owners:
        return ""
    latest = max(owners, key=lambda entry: str(entry.get("time") or ""))
    return str(latest.get("manager") or "")


def _request(meta: Mapping[str, Any], annotation: str) -> Request | None:
    """The request an annotation makes, if set (pure)."""
    annotations = meta.get("annotations") or {}
    token = annotations.get(annotation)
    if not token:
        return None
    return Request(str(token), by=manager_of(meta, annotation), reason=str(annotations.get(REASON_ANNOTATION) or ""))


def requests_of(body: Mapping[str, Any]) -> Requests:
    """The pause, promote and abort requests on a Release; a resume is told by who set the reason (pure)."""
    meta = body.get("metadata") or {}
    reason = str((meta.get("annotations") or {}).get(REASON_ANNOTATION) or "")
    return Requests(
        pause=_request(meta, PAUSE_ANNOTATION),
        promote=_request(meta, PROMOTE_ANNOTATION),
        abort=_request(meta, ABORT_ANNOTATION),
        resume=Request("", by=manager_of(meta, REASON_ANNOTATION), reason=reason),
        retry=(meta.get("annotations") or {}).get(RETRY_ANNOTATION),
    )


def tokens_of(body: Mapping[str, Any]) -> tuple[str | None, ...]:
    """The values of the request annotations, for noticing a change (pure)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return tuple(annotations.get(name) for name in REQUEST_ANNOTATIONS)
