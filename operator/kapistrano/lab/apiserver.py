"""An embedded Kubernetes API server for the e2e tests and `kapistrano demo --operator`.

KMock's KubernetesEmulator with a thin compatibility layer, served from its own thread:

    with ApiServer() as server:
        server.write_kubeconfig(Path("kubeconfig"))   # for kubectl, kopf, the Python client


KMock (by kopf's author) is "a database over HTTP", not a replica of kube-apiserver. The subclass
below adds only what a real API server does and what kopf, kubectl and the operator rely on; each
gap is named in its method's docstring. It keeps everything in memory and needs kmock (a test
dependency: `pip install kmock`). The e2e tests (tests/e2e/kube.py) can point at a real cluster
instead, so the suite also runs unchanged against a real API server.

Gaps papered over (kmock 0.8):
- objects get no uid, creationTimestamp, metadata.generation or resourceVersion;
- generation is bumped on spec changes (not on metadata or status changes), resourceVersion on
  every change, and a no-op patch changes nothing and sends no watch event;
- status subresource semantics: a patch of /status changes only status, a patch of the main
  resource (and a create) ignores status;
- optimistic concurrency: a write naming a stale metadata.resourceVersion gets 409 Conflict;
- metadata.generateName (kopf posts Events with it);
- PUT of a named object (replace) is not routed;
- list responses carry no `kind`/`apiVersion`/`resourceVersion`, so `kubectl get releases` fails;
- watch streams are sent as application/octet-stream (kubectl refuses them) and never end by
  timeoutSeconds;
- a streaming list (watch with sendInitialEvents=true, as kubectl wait does) gets no BOOKMARK
  marking the end of the initial events;
- list and watch ignore fieldSelector (metadata.name / metadata.namespace) and labelSelector
  (kubectl wait and kubectl get NAME -w use them), and a watch replays every object even when it
  starts from a resourceVersion;
- deleting an object with finalizers does not bump resourceVersion; removing the last finalizer of
  a deleting object by a patch does not delete it;
- core discovery (/api/v1) names its group version "/v1" instead of "v1", so kubectl finds no
  core resource;
- no server-side printing: `kubectl get` asks for a Table and, given a list, shows only NAME and
  AGE; Releases are printed with the CRD's printer columns (simple `.a.b` jsonPaths only);
- errors carry reasons like "Object Not Found" instead of metav1.Status reasons (NotFound);
- resources must be registered for discovery: releases, core and events.k8s.io events, secrets,
  namespaces (kopf waits for them even cluster-wide), kopf peerings, CRDs.

Gaps left as they are (the tests do not depend on them): no OpenAPI (kubectl needs
`--validate=false`), protobuf bodies are not understood (kubectl sends protobuf for built-in kinds,
so Secrets are created through the Python client as JSON), listing /api/v1/namespaces crashes kmock's
path parser (the operator runs cluster-wide, `-A`), namespaces need not exist, no admission
(schema, CEL) and no server-side apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets as random_tokens
import threading
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps, dicts, k8s, rendering

from kapistrano.api.release import GROUP, PLURAL, VERSION

#: (group/version/plural, kind, namespaced, subresources, short names, categories)
RESOURCES: list[tuple[str, str, bool, set[str], set[str], set[str]]] = [
    (f"{GROUP}/{VERSION}/{PLURAL}", "Release", True, {"status"}, {"rel"}, {"all"}),
    ("v1/events", "Event", True, set(), {"ev"}, set()),
    ("events.k8s.io/v1/events", "Event", True, set(), {"ev"}, set()),
    ("v1/secrets", "Secret", True, set(), set(), set()),
    ("v1/configmaps", "ConfigMap", True, set(), {"cm"}, set()),
    # Discovery only: kopf waits for namespaces to be served even when it runs cluster-wide.
    ("v1/namespaces", "Namespace", False, set(), {"ns"}, set()),
    ("kopf.dev/v1/kopfpeerings", "KopfPeering", True, set(), set(), set()),
    ("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", False, set(), set(), set()),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, set(), {"crd"}, set()),
]
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


def _now() -> str:
    """The current time as Kubernetes writes it (reads the clock)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selected(obj: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    """Whether an object matches the request's fieldSelector and labelSelector (equality terms only) (pure)."""
    meta = obj.get("metadata", {})
    fields = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
    for term in filter(None, params.get("fieldSelector", "").split(",")):
        key, _, value = term.partition("!=") if "!=" in term else term.partition("=")
        negate = "!=" in term
        if (str(fields.get(key, "")) == value.lstrip("=")) == negate:
            return False
    labels = meta.get("labels") or {}
    for term in filter(None, params.get("labelSelector", "").split(",")):
        if "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, _, value = term.partition("=")
            if labels.get(key) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _wants_table(request: rendering.Request) -> bool:
    """Whether the client asked for server-side printing of a resource with printer columns (pure)."""
    raw = request._raw_request
    accept = raw.headers.get("Accept", "") if raw is not None else ""
    resource = request.resource
    return "as=Table" in accept and resource is not None and resource.plural == PLURAL and resource.group == GROUP


def _age(timestamp: Any) -> str:
    """A creationTimestamp as kubectl shows ages: 42s, 5m, 3h, 2d (reads the clock)."""
    try:
        then = datetime.strptime(str(timestamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(obj: Mapping[str, Any], column: Mapping[str, Any]) -> Any:
    """The value of a printer column's simple `.a.b.c` jsonPath in an object (pure apart from ages)."""
    value: Any = obj
    for key in str(column["jsonPath"]).strip(".").split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    if column.get("type") == "date":
        return _age(value) if value else "<unknown>"
    return value if value is not None else "<none>"


def _table(request: rendering.Request, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of Releases with the CRD's printer columns (gap: no server-side printing)."""
    from kapistrano.api.crd import PRINTER_COLUMNS  # noqa: PLC0415  (pydantic schema module, imported on demand)

    whole = request.params.get("includeObject") == "Object"
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [
        {
            "name": c["name"],
            "type": c["type"],
            "format": "",
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in PRINTER_COLUMNS
    ]
    rows = []
    for obj in objects:
        meta = obj.get("metadata", {})
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        cells = [meta.get("name"), *(_cell(obj, c) for c in PRINTER_COLUMNS)]
        rows.append({"cells": cells, "object": obj if whole else partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": definitions,
        "rows": rows,
    }


@attrs.define(kw_only=True)
class CompatEmulator(kmock.KubernetesEmulator):
    """KubernetesEmulator plus the API-server behaviour kopf and kubectl rely on (see the module docstring)."""

    _revision: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, kind, namespaced, subresources, short, categories in RESOURCES:
            self.resources[key] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=VERBS,
                subresources=subresources,
                shortnames=short,
                categories=categories,
            )

    def _next_revision(self) -> str:
        """A new resourceVersion: a counter, as etcd's revision is (changes the counter)."""
        self._revision += 1
        return str(self._revision)

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        """The registered discovery information of a resource, if any (pure)."""
        found = self.resources.get(resource)
        return found if isinstance(found, kmock.ResourceInfo) else None

    async def _handle(self, request: rendering.Request) -> Any:
        """Serve writes the way an API server does; reads go to kmock (gap: PUT, metadata, status)."""
        if request.resource is None or request.resource.plural is None:
            return await super()._handle(request)
        resource = request.resource
        if request.method == kmock.method.PUT and request.name is not None:
            request = attrs.evolve(request, action=kmock.action.UPDATE)  # a replace
        if request.action == kmock.action.WATCH:
            return await self._stream_watch(request)
        writes = {kmock.action.CREATE: self._create, kmock.action.UPDATE: self._update}
        writes[kmock.action.DELETE] = self._delete
        write = writes.get(request.action) if request.action is not None else None
        if write is None:
            return await super()._handle(request)
        bus = self._buses[resource]
        async with self._lock:
            for event in write(request):
                await bus.put(event)
        # Skip KubernetesEmulator._handle (it would apply the write a second time): render only.
        return await apps.RawHandler._handle(self, request)

    async def _stream_watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """A watch stream as JSON lines, ended after timeoutSeconds (gap: octet-stream, no server timeout)."""
        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(timeout):
                async for event in self._serve_watch(request):
                    if isinstance(event, dict):
                        sent = event
                        if _wants_table(request) and event.get("type") != "BOOKMARK":
                            sent = {**event, "object": _table(request, [event["object"]])}
                        await response.write(json.dumps(sent).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    def _create(self, request: rendering.Request) -> list[dict[str, Any]]:
        """Store a new object with uid, timestamps, generation 1 and no status (gap: metadata, generateName)."""
        assert request.resource is not None
        body: dict[str, Any] = request.data if isinstance(request.data, dict) else {}
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_tokens.token_hex(3)
        info = self._info(request.resource)
        if info is None or info.namespaced:
            meta["namespace"] = request.namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if info is not None and "status" in info.subresources:
            body.pop("status", None)
        key: Any = (request.resource, meta.get("namespace"), meta["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise k8s.KubernetesObjectConflictError(
                status=409, reason="AlreadyExists", message=f"{request.resource.plural} {meta['name']!r} already exists"
            )
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        meta["resourceVersion"] = self._next_revision()
        if key in self.objects:
            self.objects[key].create(body)
        else:
            self.objects[key] = body
        return [{"type": "ADDED", "object": copy.deepcopy(body)}]

    def _existing(self, request: rendering.Request) -> kmock.Object:
        """The stored object a named request addresses (reads the store); 404 when absent."""
        assert request.resource is not None
        key: Any = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            raise k8s.KubernetesObjectNotFoundError(
                status=404, reason="NotFound", message=f"{request.resource.plural} {request.name!r} not found"
            )
        stored: kmock.Object = self.objects[key]
        return stored

    def _update(self, request: rendering.Request) -> list[dict[str, Any]]:
        """Patch or replace: status only via /status, generation on spec changes (gap: subresources, metadata)."""
        assert request.resource is not None
        stored = self._existing(request)
        old = copy.deepcopy(stored.raw)
        patch = request.data if request.data is not None else {}
        sent_version = patch.get("metadata", {}).get("resourceVersion") if isinstance(patch, dict) else None
        if sent_version and sent_version != old["metadata"].get("resourceVersion"):
            raise k8s.KubernetesError(
                status=409, reason="Conflict", message="the object has been modified; apply your changes to the latest"
            )
        new = dict(patch) if request.method == kmock.method.PUT else dict(dicts.patch_dict(old, patch))
        info = self._info(request.resource)
        if request.subresource == "status":
            new = {**old, "status": new.get("status")}
        elif info is not None and "status" in info.subresources:
            new["status"] = old.get("status")
        if new.get("status") is None:
            new.pop("status", None)
        meta = new.setdefault("metadata", {})
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        if "deletionTimestamp" in old["metadata"]:
            meta["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
        if new == old:
            return []  # a no-op write changes nothing and is not seen by watchers
        if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }:
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = self._next_revision()
        stored.history.append(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            stored.delete()
            return [{"type": "DELETED", "object": copy.deepcopy(new)}]
        return [{"type": "MODIFIED", "object": copy.deepcopy(new)}]

    def _delete(self, request: rendering.Request) -> list[dict[str, Any]]:
        """Delete at once, or mark for deletion while finalizers remain (gap: resourceVersion)."""
        stored = self._existing(request)
        new = copy.deepcopy(stored.raw)
        meta = new["metadata"]
        if meta.get("deletionTimestamp"):
            return []
        meta["resourceVersion"] = self._next_revision()
        if meta.get("finalizers"):
            meta["deletionTimestamp"] = _now()
            meta["deletionGracePeriodSeconds"] = 0
            stored.history.append(new)
            return [{"type": "MODIFIED", "object": copy.deepcopy(new)}]
        stored.history.append(new)
        stored.delete()
        return [{"type": "DELETED", "object": copy.deepcopy(new)}]

    def _matching(self, request: rendering.Request) -> list[dict[str, Any]]:
        """Live objects of the requested resource, namespace and selectors (reads the store)."""
        found = []
        for (resource, namespace, name), stored in self.objects.items():
            if resource != request.resource or stored.deleted:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if request.name is not None and name != request.name:
                continue
            if _selected(stored.raw, request.params):
                found.append(copy.deepcopy(stored.raw))
        return found

    async def _render_error(self, exc: Exception) -> Any:
        """Errors with the CamelCase reasons of metav1.Status (gap: "Object Not Found" and the like)."""
        if isinstance(exc, k8s.KubernetesError) and exc.reason and " " in exc.reason:
            reason = {404: "NotFound", 409: "Conflict"}.get(exc.status, exc.reason.replace(" ", ""))
            exc = k8s.KubernetesError(status=exc.status, reason=reason, message=exc.message, details={})
        return await super()._render_error(exc)

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        """The object, or a 404 NotFound naming it (gap: error reason)."""
        async with self._lock:
            found = copy.deepcopy(self._existing(request).raw)
        return _table(request, [found]) if _wants_table(request) else found

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """Resource discovery of one group version, "v1" for the core group (gap: core discovery said "/v1")."""
        found = await super()._serve_version(request)
        assert isinstance(found, dict)
        found["groupVersion"] = found["groupVersion"].removeprefix("/")
        return found

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        """A list with kind, apiVersion and resourceVersion, honouring selectors (gap: list kind, selectors)."""
        assert request.resource is not None
        info = self._info(request.resource)
        if info is None and request.resource not in self._get_resources():
            raise k8s.KubernetesResourceNotFoundError()
        async with self._lock:
            items = self._matching(request)
            revision = str(self._revision)
        if _wants_table(request):
            return {**_table(request, items), "metadata": {"resourceVersion": revision}}
        group = request.resource.group
        return {
            "apiVersion": f"{group}/{request.resource.version}" if group else request.resource.version,
            "kind": f"{info.kind if info and info.kind else 'Object'}List",
            "metadata": {"resourceVersion": revision},
            "items": items,
        }

    def _initial_events_end(self, request: rendering.Request) -> dict[str, Any]:
        """The BOOKMARK that ends the initial events of a streaming list (WatchList, kubectl wait) (pure)."""
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        info = self._info(request.resource)
        marker = {"resourceVersion": str(self._revision), "annotations": {"k8s.io/initial-events-end": "true"}}
        kind = info.kind if info is not None and info.kind else "Object"
        return {
            "type": "BOOKMARK",
            "object": {"apiVersion": f"{group}/{version}" if group else version, "kind": kind, "metadata": marker},
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """Events after the requested resourceVersion, honouring selectors (gap: resumption, selectors)."""
        yield b""
        since = int(request.params.get("resourceVersion") or 0)
        async with self._lock:
            initial = [o for o in self._matching(request) if int(o["metadata"].get("resourceVersion", 0)) > since]
        for obj in initial:
            yield {"type": "ADDED", "object": obj}
        if request.params.get("sendInitialEvents") == "true":
            yield self._initial_events_end(request)
        assert request.resource is not None
        async for event in self._buses[request.resource]:
            obj = event.get("object", {})
            meta = obj.get("metadata", {})
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                continue
            if request.name is not None and meta.get("name") != request.name:
                continue
            if _selected(obj, request.params):
                yield event


class ApiServer:
    """The emulator served on 127.0.0.1:<free port> from its own thread and event loop (a context manager)."""

    def __init__(self) -> None:
        self.emulator: CompatEmulator | None = None
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-api", daemon=True)

    def start(self) -> ApiServer:
        """Start serving; returns once the port is known (starts a thread)."""
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the embedded API server did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("the embedded API server failed to start") from self._error
        return self

    def _run(self) -> None:
        """The thread's body: run the server until stopped."""
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        """Serve until stop() is called."""
        self._stop = asyncio.Event()
        async with CompatEmulator() as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.port = server.port
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        """Stop serving and join the thread (stops the thread; idempotent)."""
        if not self._thread.is_alive():
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    @property
    def url(self) -> str:
        """The server's base URL (pure)."""
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for this server whose context defaults to `namespace` (writes the file)."""
        return write_kubeconfig(path, self.port, namespace)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def write_kubeconfig(path: Path, port: int, namespace: str = "default") -> Path:
    """A kubeconfig for http://127.0.0.1:PORT with a dummy token, context namespace `namespace` (writes the file)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "kmock", "user": {"token": "kmock"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": namespace}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path
