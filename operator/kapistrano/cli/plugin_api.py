"""The API server for `kubectl kapistrano`: kubectl's connection flags through the client's config loaders."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kapistrano.api.release import GROUP, KIND, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
#: The field manager of the plugin's changes: the operator records it as who asked for a request.
MANAGER = "kubectl-kapistrano"

Obj = dict[str, Any]


class PluginError(Exception):
    """A problem to print as one line (`error: ...`) and exit 1 with."""


class Releases:
    """Release objects in one namespace (or all), read, watched and merge-patched through the official client."""

    def __init__(self, api: Any, namespace: str, timeout: float | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.timeout = timeout

    def _options(self) -> dict[str, Any]:
        """Per-request options: --request-timeout (pure)."""
        return {"_request_timeout": self.timeout} if self.timeout else {}

    def get(self, name: str) -> Obj:
        """The Release as a dict (calls the API)."""
        return self._call(
            name,
            lambda: self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, **self._options()
            ),
        )

    def list(self, all_namespaces: bool = False) -> Obj:
        """The Releases of the namespace, or of every namespace, as a list object (calls the API)."""
        if all_namespaces:
            return self._call(
                "*", lambda: self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **self._options())
            )
        return self._call(
            "*",
            lambda: self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, **self._options()),
        )

    def patch(self, name: str, patch: Obj) -> Obj:
        """Apply a JSON merge patch; returns the patched Release (calls the API)."""
        return self._call(
            name,
            lambda: self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, patch,
                _content_type=MERGE_PATCH, field_manager=MANAGER, **self._options(),
            ),
        )  # fmt: skip

    def watch(self, name: str | None, all_namespaces: bool, since: str, timeout: float | None) -> Iterator[Obj]:
        """Objects as they change after resourceVersion `since`, until `timeout` (a watch, calls the API)."""
        from kubernetes import watch  # noqa: PLC0415  (slow import, only when needed)

        selector = {"field_selector": f"metadata.name={name}"} if name else {}
        limit = {"timeout_seconds": max(1, int(timeout))} if timeout is not None else {}
        lister, args = self.api.list_namespaced_custom_object, [GROUP, VERSION, self.namespace, PLURAL]
        if all_namespaces:
            lister, args = self.api.list_cluster_custom_object, [GROUP, VERSION, PLURAL]
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            lister, *args, resource_version=since, **selector, **limit
        )
        try:
            for event in stream:
                if event.get("type") == "ERROR":
                    raise PluginError(f"watch: {event.get('raw_object') or event.get('object')}")
                obj = event.get("object")
                if isinstance(obj, dict):
                    yield obj
        except OSError as exc:
            raise PluginError(f"cannot reach the API server: {exc}") from None

    def _call(self, name: str, request: Callable[[], Any]) -> Obj:
        """Run a request, turning API errors into one-line PluginErrors (calls the API)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415  (slow import, only when needed)

        try:
            result = request()
        except ApiException as exc:
            if exc.status == 404:
                raise PluginError(f"{KIND} {name!r} not found in namespace {self.namespace!r}") from None
            raise PluginError(f"API server: {exc.status} {exc.reason}: {_api_message(exc.body)}") from None
        except OSError as exc:  # urllib3 connection errors are OSErrors
            raise PluginError(f"cannot reach the API server: {exc}") from None
        if not isinstance(result, dict):
            raise PluginError(f"unexpected answer from the API server: {type(result).__name__}")
        return result


def _api_message(body: Any) -> str:
    """The `message` of a metav1.Status body, else the body (pure)."""
    try:
        return str(json.loads(body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(body)


def connect(args: argparse.Namespace) -> Releases:
    """An API client from --kubeconfig / $KUBECONFIG / ~/.kube/config (or in a pod, its service account)."""
    from kubernetes import client, config  # noqa: PLC0415  (slow import, only when needed)
    from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415

    if args.kubeconfig and not Path(args.kubeconfig).exists():
        raise PluginError(f"kubeconfig {args.kubeconfig} does not exist")
    try:
        if _in_cluster(args):
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api_client = client.ApiClient()
            namespace = args.namespace or _pod_namespace()
        else:
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=args.kubeconfig, context=args.context
            )
            namespace = args.namespace or _context_namespace(args.kubeconfig, args.context)
    except ConfigException as exc:
        raise PluginError(f"kubeconfig: {exc}") from None
    impersonate(api_client, getattr(args, "as_user", None), getattr(args, "as_group", None))
    timeout = getattr(args, "request_timeout", None)
    return Releases(client.CustomObjectsApi(api_client), namespace, timeout or None)


def impersonate(api_client: Any, user: str | None, group: str | None) -> None:
    """Send kubectl's --as / --as-group impersonation headers on every request (changes the client)."""
    if user:
        api_client.set_default_header("Impersonate-User", user)
    if group:
        api_client.set_default_header("Impersonate-Group", group)  # the client keeps one value per header


def _in_cluster(args: argparse.Namespace) -> bool:
    """Whether to use the pod's service account: no kubeconfig anywhere, inside a pod (reads the environment)."""
    if args.kubeconfig or os.environ.get("KUBECONFIG"):
        return False
    return not (Path.home() / ".kube" / "config").exists() and "KUBERNETES_SERVICE_HOST" in os.environ


def _pod_namespace() -> str:
    """The namespace of the pod this runs in (reads the service account files)."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "default"


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the chosen (or current) kubeconfig context, else `default` (reads the kubeconfig)."""
    from kubernetes import config  # noqa: PLC0415

    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"
