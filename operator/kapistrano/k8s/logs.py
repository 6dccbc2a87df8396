"""Operator logs that name their Release, host and version, for `kapistrano run --log-format json`.

Records carry kopf's `k8s_ref` (kopf's JSON formatter writes it as the `object` field) and `host` and
`version` attributes, which the JSON formatter writes as fields of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from kapistrano.engine.events import EventSink, HostEvent


def object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object reference kopf puts in JSON logs as `object` (pure)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "namespace": meta.get("namespace"),
    }


class ReleaseLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records name the Release and its spec.version now; a call's own `extra` wins."""

    def __init__(self, logger: logging.Logger, body: Mapping[str, Any]) -> None:
        super().__init__(logger, {"k8s_ref": object_ref(body)})
        self.body = body  # kopf's live body: spec.version is read at each record

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the Release's fields into the call's extra (pure)."""
        version = (self.body.get("spec") or {}).get("version")
        kwargs["extra"] = {**(self.extra or {}), "version": version, **(kwargs.get("extra") or {})}
        return msg, kwargs


def release_logger(logger: logging.Logger, body: Mapping[str, Any]) -> ReleaseLogger:
    """A logger for one Release (pure)."""
    return ReleaseLogger(logger, body)


def log_sink(log: logging.LoggerAdapter[logging.Logger]) -> EventSink:
    """A HostEvent sink that logs host phase changes and failures with a `host` field (side effect: logs)."""
    last: dict[str, str] = {}

    def emit(event: HostEvent) -> None:
        extra = {"host": event.host}
        if event.warning:
            log.warning("%s: %s: %s", event.host, event.reason or "HostFailed", event.message, extra=extra)
        elif event.phase is not None and last.get(event.host) != event.phase:
            last[event.host] = str(event.phase)
            log.info("%s: %s: %s", event.host, event.phase, event.message, extra=extra)

    return emit
