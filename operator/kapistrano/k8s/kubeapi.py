"""The Kubernetes API client the operator's own calls use (status patches, Secrets); kopf has its own.

Every call here blocks, so callers run them with asyncio.to_thread; none is made on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from kubernetes import client, config

_lock = threading.Lock()
_api: client.ApiClient | None = None
#: Threads for these blocking calls and HTTP connections to keep: every Release served writes its
#: status from a thread, so with asyncio's default (cpu count + 4 threads) fifty Releases queue
#: behind six slow writes and their rollouts wait on each other.
API_THREADS = 64


def api_client() -> Any:
    """The shared ApiClient: in-cluster credentials, else KUBECONFIG / ~/.kube/config (reads config once)."""
    global _api  # noqa: PLW0603 - one client per process, created on first use
    with _lock:
        if _api is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            configuration.connection_pool_maxsize = API_THREADS
            _api = client.ApiClient(configuration)
        return _api


def use_api_threads() -> None:
    """Give the running loop's to_thread calls API_THREADS threads (changes the loop's default executor)."""
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="kapistrano-api")
    )


def custom_objects() -> Any:
    """CustomObjectsApi on the shared client (pure once the client exists)."""
    return client.CustomObjectsApi(api_client())


def core() -> Any:
    """CoreV1Api on the shared client (pure once the client exists)."""
    return client.CoreV1Api(api_client())
