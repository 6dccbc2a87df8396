"""`kubectl kapistrano get [RELEASE] [-w] [-o json|yaml] [-A]`: Releases with a per-host tree, or watched."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import yaml

from kapistrano.cli.kubectl_plugin import format_table, release_name, spec_of, status_of
from kapistrano.cli.plugin_api import Obj, Releases

#: What a transition is, per host: (phase, version, ready); per Release: its phase.
HostState = tuple[str, str, bool]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `get` (changes parser)."""
    parser.add_argument("name", metavar="RELEASE", nargs="?", type=release_name, help="one Release (default: all)")
    parser.add_argument("-w", "--watch", action="store_true", help="watch: one line per host transition")
    parser.add_argument("-o", "--output", choices=("json", "yaml"), help="print the object(s)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="Releases of every namespace")


def where(obj: Obj) -> str:
    """namespace/name of an object (pure)."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def format_tree(obj: Obj) -> str:
    """A Release and its hosts as a tree, as `kubectl argo rollouts get` shows a rollout (pure)."""
    spec, status = spec_of(obj), status_of(obj)
    meta = obj.get("metadata") or {}
    current = f" (current {status.current_version})" if status and status.current_version else ""
    lines = [
        f"Name:       {meta.get('name', '')}",
        f"Namespace:  {meta.get('namespace', '')}",
        f"Version:    {spec.get('version')}{current}",
        f"Phase:      {status.phase if status else 'Unknown'}",
        f"Ready:      {status.ready if status else '-'}",
    ]
    if status and status.message:
        lines.append(f"Message:    {status.message}")
    rows = [[str(meta.get("name", "")), "Release", str(status.phase) if status else "-", str(spec.get("version")),
             status.ready if status else "-", ""]]  # fmt: skip
    hosts = status.hosts if status else []
    for i, host in enumerate(hosts):
        branch = "└──" if i == len(hosts) - 1 else "├──"
        ready = "yes" if host.ready else "no"
        rows.append([f"{branch} {host.name}", "Host", str(host.phase), host.version or "-", ready, host.message])
    return "\n".join([*lines, "", format_table(["NAME", "KIND", "PHASE", "VERSION", "READY", "MESSAGE"], rows)])


def format_list(items: list[Obj], all_namespaces: bool) -> str:
    """One line per Release, as `kubectl get releases` (pure)."""
    header = [*(["NAMESPACE"] if all_namespaces else []), "NAME", "VERSION", "CURRENT", "READY", "PHASE"]
    rows = []
    for obj in items:
        status, meta = status_of(obj), obj.get("metadata") or {}
        row = [str(meta.get("name", "")), str(spec_of(obj).get("version")), (status and status.current_version) or "-",
               status.ready if status else "-", str(status.phase) if status else "-"]  # fmt: skip
        rows.append([str(meta.get("namespace", "")), *row] if all_namespaces else row)
    return format_table(header, rows)


def dump(obj: Obj, output: str) -> str:
    """An object as JSON or YAML (pure)."""
    if output == "json":
        return json.dumps(obj, indent=2)
    return str(yaml.safe_dump(obj, sort_keys=False)).rstrip("\n")


def host_states(obj: Obj) -> dict[str, HostState]:
    """Each host's (phase, version, ready) (pure)."""
    status = status_of(obj)
    return {h.name: (str(h.phase), h.version or "-", h.ready) for h in (status.hosts if status else [])}


def transitions(seen: dict[str, dict[str, HostState]], obj: Obj) -> list[str]:
    """Lines for the host transitions (and Release phase change) since `seen`, which is updated (changes seen)."""
    key = where(obj)
    before = seen.get(key, {})
    now = host_states(obj)
    status = status_of(obj)
    phase = str(status.phase) if status else "-"
    lines = []
    if before.get("", ("",))[0] != phase:
        message = f": {status.message}" if status and status.message else ""
        lines.append(f"{key}  {phase}{message}")
    for name, state in now.items():
        if before.get(name) != state:
            lines.append(f"{key}  {name}  {state[0]}  {state[1]}  ready={'yes' if state[2] else 'no'}")
    seen[key] = {**now, "": (phase, "", False)}
    return lines


def cmd_get(args: argparse.Namespace, releases: Releases) -> int:
    """Print one Release (tree) or all (table); with -w, then every transition (calls the API, prints)."""
    if args.name:
        obj = releases.get(args.name)
        items, version = [obj], str((obj.get("metadata") or {}).get("resourceVersion", ""))
        print(dump(obj, args.output) if args.output else format_tree(obj))
    else:
        listed = releases.list(args.all_namespaces)
        items, version = list(listed.get("items") or []), str((listed.get("metadata") or {}).get("resourceVersion", ""))
        print(dump(listed, args.output) if args.output else format_list(items, args.all_namespaces))
    if not args.watch:
        return 0
    seen: dict[str, dict[str, HostState]] = {}
    for obj in items:
        transitions(seen, obj)
    for obj in watched(releases, args, version):
        if args.output:
            print(json.dumps(obj) if args.output == "json" else "---\n" + dump(obj, "yaml"), flush=True)
            continue
        for line in transitions(seen, obj):
            print(line, flush=True)
    return 0


def watched(releases: Releases, args: argparse.Namespace, version: str) -> Iterator[Obj]:
    """Objects as they change, the watch renewed from the last resourceVersion when it ends (calls the API)."""
    while True:
        for obj in releases.watch(args.name, args.all_namespaces, version, timeout=None):
            version = str((obj.get("metadata") or {}).get("resourceVersion", version))
            yield obj
