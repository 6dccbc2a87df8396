"""Check objects against the generated CRD the way an API server does, without one.

The API server prunes nulls of non-nullable fields, applies defaults, validates the OpenAPI schema (RE2
regular expressions, strict field validation with kubectl's default `--validate=strict`), checks list-map
keys are unique, then evaluates the CEL rules. This module does the same steps with jsonschema, google-re2
and cel-python, so the tests can show which bad inputs the CRD itself rejects at `kubectl apply`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import re2  # type: ignore[import-untyped]
import yaml
from celpy.adapter import json_to_cel

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "release.yaml"
EXAMPLE_FILE = ROOT / "manifests" / "examples" / "release.yaml"

Schema = dict[str, Any]


def load_crd() -> Schema:
    """The CRD from crds/release.yaml (reads the file)."""
    (crd,) = [d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d]
    return dict(crd)


def openapi_schema(crd: Schema | None = None) -> Schema:
    """The openAPIV3Schema of the only version of the CRD."""
    (version,) = (crd or load_crd())["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its field path (properties, map values and list items)."""
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def to_jsonschema(node: Schema) -> Schema:
    """Translate a structural OpenAPI node into JSON Schema (nullable, int-or-string, strict fields)."""
    out: Schema = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("nullable"):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {k: to_jsonschema(v) for k, v in node["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_jsonschema(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_jsonschema(node["items"])
    return out


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Schema) -> Iterator[jsonschema.ValidationError]:
    """jsonschema's `pattern` keyword with Go/RE2 semantics ($ is the end of the text)."""
    if isinstance(instance, str) and not re2.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Re2Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _re2_pattern})


@cache
def _compiled_validator() -> Any:
    """A JSON Schema validator for the whole Release object (reads the CRD once)."""
    return _Re2Validator(to_jsonschema(openapi_schema()))


def prune_and_default(value: Any, node: Schema) -> Any:
    """A copy of value with nulls of non-nullable fields dropped and defaults applied, as the API server does."""
    if isinstance(value, dict) and "properties" in node:
        out: dict[str, Any] = {}
        for key, item in value.items():
            prop = node["properties"].get(key)
            if prop is None:
                out[key] = copy.deepcopy(item)
            elif item is not None or prop.get("nullable"):
                out[key] = prune_and_default(item, prop)
        for key, prop in node["properties"].items():
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
        return out
    if isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        return {k: prune_and_default(v, node["additionalProperties"]) for k, v in value.items()}
    if isinstance(value, list) and "items" in node:
        return [prune_and_default(v, node["items"]) for v in value]
    return copy.deepcopy(value)


def _dotted(parts: Any) -> str:
    """A jsonschema error path as spec.hosts[1].name."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _child_nodes(value: Any, node: Schema, path: str) -> Iterator[tuple[Any, Schema, str]]:
    """The (value, schema, path) of every child of a value that its schema describes."""
    if isinstance(value, dict) and "properties" in node:
        for key, item in value.items():
            if key in node["properties"]:
                yield item, node["properties"][key], f"{path}.{key}" if path else key
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        for key, item in value.items():
            yield item, node["additionalProperties"], f"{path}.{key}"
    elif isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            yield item, node["items"], f"{path}[{index}]"


def list_map_errors(value: Any, node: Schema, path: str = "") -> list[str]:
    """Duplicate keys in x-kubernetes-list-type: map lists, as the API server reports them."""
    errors: list[str] = []
    if isinstance(value, list) and node.get("x-kubernetes-list-type") == "map":
        keys = node["x-kubernetes-list-map-keys"]
        seen: set[tuple[Any, ...]] = set()
        for index, item in enumerate(value):
            key = tuple(item.get(k) for k in keys)
            if key in seen:
                errors.append(f"{path}[{index}]: Duplicate value: {dict(zip(keys, key, strict=True))}")
            seen.add(key)
    for item, child, child_path in _child_nodes(value, node, path):
        errors.extend(list_map_errors(item, child, child_path))
    return errors


@cache
def _cel_program(rule: str) -> Any:
    """A compiled CEL rule."""
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(value: Any, node: Schema, path: str = "") -> list[str]:
    """Failed x-kubernetes-validations rules, each as 'path: message'; null values are not evaluated."""
    if value is None:
        return []
    errors: list[str] = []
    for rule in node.get("x-kubernetes-validations", []):
        if not bool(_cel_program(rule["rule"]).evaluate({"self": json_to_cel(value)})):
            errors.append(f"{path}: {rule['message']}")
    for item, child, child_path in _child_nodes(value, node, path):
        errors.extend(cel_errors(item, child, child_path))
    return errors


def _lines(error: jsonschema.ValidationError) -> list[str]:
    """One error as API-server style lines: missing and unknown fields are named by their own path."""
    parent = list(error.absolute_path)
    if error.validator == "required":
        missing = re.match(r"'(.+)' is a required property", error.message)
        return [f"{_dotted([*parent, missing.group(1) if missing else '?'])}: Required value"]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        return [f"{_dotted([*parent, key])}: unknown field" for key in error.instance if key not in known]
    return [f"{_dotted(parent)}: {error.message}"]


def openapi_errors(document: Any) -> list[str]:
    """OpenAPI schema errors for a Release object after pruning and defaulting, each as 'path: message'."""
    prepared = prune_and_default(document, openapi_schema())
    errors = sorted(_compiled_validator().iter_errors(prepared), key=lambda e: list(map(str, e.absolute_path)))
    return [line for error in errors for line in _lines(error)]


def crd_errors(document: Any) -> dict[str, list[str]]:
    """Every layer's errors for a Release object: openapi, listmap and cel (cel only on a schema-valid object)."""
    schema = openapi_schema()
    prepared = prune_and_default(document, schema)
    openapi = openapi_errors(document)
    return {
        "openapi": openapi,
        "listmap": list_map_errors(prepared, schema),
        "cel": [] if openapi else cel_errors(prepared, schema),
    }
