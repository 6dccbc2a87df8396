"""The Kubernetes API client the operator's own calls use (status patches, Secrets); kopf has its own.

Every call here blocks, so callers run them with asyncio.to_thread; none is made on the event loop.
"""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, config

_lock = threading.Lock()
_api: client.ApiClient | None = None


def api_client() -> Any:
    """The shared ApiClient: in-cluster credentials, else KUBECONFIG / ~/.kube/config (reads config once)."""
    global _api  # noqa: PLW0603 - one client per process, created on first use
    with _lock:
        if _api is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                _api = client.ApiClient()
            except config.ConfigException:
                _api = config.new_client_from_config()  # type: ignore[no-untyped-call]
        return _api


def custom_objects() -> Any:
    """CustomObjectsApi on the shared client (pure once the client exists)."""
    return client.CustomObjectsApi(api_client())


def core() -> Any:
    """CoreV1Api on the shared client (pure once the client exists)."""
    return client.CoreV1Api(api_client())
