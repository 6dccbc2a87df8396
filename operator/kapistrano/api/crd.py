"""The Release CustomResourceDefinition, generated from the pydantic models.

The pydantic JSON schema is turned into a Kubernetes *structural* schema: every `$ref` is inlined,
`title` is dropped, `X | None` becomes X with `nullable: true`, `int | str` becomes
`x-kubernetes-int-or-string`, and `additionalProperties: false` disappears (structural schemas only use
additionalProperties for maps). The Kubernetes keywords the models carry in `json_schema_extra`
(list maps, CEL rules) are kept as they are.

Two kinds of optional fields are deliberately NOT nullable: enums (the API server checks `enum` against a
null value and would reject it) and fields that a CEL rule of their parent tests with `has()` (a null
value would count as set). For those the API server prunes a null before validation, so null means
"unset", as it does for the models.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from kapistrano.api.release import API_VERSION, GROUP, KIND, PLURAL, VERSION
from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import ReleaseStatus

Schema = dict[str, Any]

SINGULAR = "release"
LIST_KIND = f"{KIND}List"
SHORT_NAMES = ["rel"]
CATEGORIES = ["all"]
CRD_NAME = f"{PLURAL}.{GROUP}"

#: Schema keywords a structural schema may carry, in the order they are written out.
_KEYWORD_ORDER = (
    "description",
    "type",
    "format",
    "nullable",
    "x-kubernetes-int-or-string",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
)
_ALLOWED = frozenset(_KEYWORD_ORDER)
_DROPPED = frozenset({"title", "$defs"})
_NULL = {"type": "null"}
_HAS_FIELD = re.compile(r"has\(self\.([A-Za-z0-9_]+)\)")

PRINTER_COLUMNS: list[Schema] = [
    {"name": "Version", "type": "string", "jsonPath": ".spec.version", "description": "Desired version."},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready", "description": "Updated-and-ready / total."},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase of the rollout."},
    {
        "name": "Message",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.message",
        "description": "What is happening now.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class SchemaConversionError(ValueError):
    """A pydantic schema construct that has no structural equivalent."""


def _resolve_ref(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline a $ref: the definition, overlaid with the referencing node's own keys (pure)."""
    name = str(node["$ref"]).rsplit("/", 1)[-1]
    if name not in defs:
        raise SchemaConversionError(f"unknown $ref {node['$ref']!r}")
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    return {**copy.deepcopy(defs[name]), **siblings}


def _resolve_union(node: Schema) -> tuple[Schema, bool]:
    """Turn anyOf into one schema; returns it and whether null was one of the options (pure)."""
    options: list[Schema] = node["anyOf"]
    rest = [o for o in options if o != _NULL]
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **outer}, len(rest) < len(options)
    if sorted(str(o.get("type")) for o in rest) == ["integer", "string"]:
        return {**outer, "x-kubernetes-int-or-string": True}, len(rest) < len(options)
    raise SchemaConversionError(f"union {options!r} has no structural equivalent")


def _flatten(node: Schema, defs: dict[str, Schema]) -> tuple[Schema, bool]:
    """Inline refs and unions at the top of a node until neither is left (pure)."""
    nullable = False
    while "$ref" in node or "anyOf" in node:
        if "$ref" in node:
            node = _resolve_ref(node, defs)
        else:
            node, was_nullable = _resolve_union(node)
            nullable = nullable or was_nullable
    return node, nullable


def _order(node: Schema) -> Schema:
    """The node's keywords in the fixed output order, rejecting unknown ones (pure)."""
    unknown = set(node) - _ALLOWED
    if unknown:
        raise SchemaConversionError(f"unsupported schema keywords {sorted(unknown)}")
    return {k: node[k] for k in _KEYWORD_ORDER if k in node}


def _has_checked(node: Schema) -> set[str]:
    """Property names a CEL rule on this object tests with has() (pure)."""
    rules = node.get("x-kubernetes-validations", [])
    return {name for rule in rules for name in _HAS_FIELD.findall(str(rule["rule"]))}


def _convert_properties(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    """Convert every property of an object node; each must have a description (pure)."""
    checked = _has_checked(node)
    out: Schema = {}
    for name, prop in node["properties"].items():
        converted = convert_schema(prop, defs, f"{path}.{name}", may_be_null=name not in checked)
        if not converted.get("description"):
            raise SchemaConversionError(f"{path}.{name} has no description")
        out[name] = converted
    return out


def convert_schema(node: Schema, defs: dict[str, Schema], path: str = "", *, may_be_null: bool = True) -> Schema:
    """Convert one pydantic JSON schema node into a structural OpenAPI v3 node (pure)."""
    flat, nullable = _flatten(copy.deepcopy(node), defs)
    out = {k: v for k, v in flat.items() if k not in _DROPPED}
    if out.get("default", 0) is None or isinstance(out.get("default"), (dict, list)):
        del out["default"]
    if nullable and may_be_null and "enum" not in out and out.get("type") != "object":
        out["nullable"] = True
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]
    elif isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = convert_schema(out["additionalProperties"], defs, f"{path}.*")
    if "properties" in out:
        out["properties"] = _convert_properties(out, defs, path)
    if "items" in out:
        out["items"] = convert_schema(out["items"], defs, f"{path}[]")
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaConversionError(f"{path or '(root)'} has no type")
    return _order(out)


def model_schema(model: type[ReleaseSpec] | type[ReleaseStatus], description: str) -> Schema:
    """The structural schema of a top-level model, with the given field description (pure)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Schema] = raw.pop("$defs", {})
    return convert_schema({**raw, "description": description}, defs, model.__name__)


def release_schema() -> Schema:
    """The openAPIV3Schema of the Release kind (pure)."""
    return {
        "description": "A Release says which version of an application runs on which SSH hosts; the operator "
        "rolls it out Capistrano-style, restarting services one host at a time.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            # An API server refuses anything here but `type: object` (even a description): metadata is
            # validated by the server itself, not by this schema.
            "metadata": {"type": "object"},
            "spec": model_schema(ReleaseSpec, "Desired state: the version, its source, the hosts and the strategy."),
            "status": model_schema(ReleaseStatus, "Observed state, written by the operator (kstatus conditions)."),
        },
    }


def release_crd() -> Schema:
    """The Release CustomResourceDefinition as a dict (pure)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": LIST_KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": release_schema()},
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """A YAML dumper that writes repeated values out instead of using anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never use YAML aliases (pure)."""
        return True


HEADER = f"# {API_VERSION} Release CRD. Generated by `kapistrano crd` from the models; do not edit by hand.\n"


def render_crd() -> str:
    """The Release CRD as a YAML document with a header comment (pure, deterministic)."""
    body = yaml.dump(release_crd(), Dumper=_NoAliasDumper, sort_keys=False, width=4096, allow_unicode=True)
    return HEADER + "---\n" + body
