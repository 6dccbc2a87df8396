"""The generated Release CRD: up to date, a valid structural CustomResourceDefinition, and what API.md says."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import re2  # type: ignore[import-untyped]
import yaml
from kapistrano.api.crd import SchemaConversionError, convert_schema, release_crd, render_crd
from pydantic import BaseModel, Field

from .crdcheck import CRD_FILE, ROOT, load_crd, openapi_schema, walk

#: A Kubernetes version kubernetes-validate ships schemas for; CRD apiextensions/v1 is stable since 1.16.
K8S_VERSION = "1.33"
STALE = "crds/release.yaml is stale: run `kapistrano crd > crds/release.yaml`"


def run_kapistrano(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the kapistrano command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "kapistrano.cli.main", *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


def test_crd_command_output_is_the_committed_file() -> None:
    result = run_kapistrano("crd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == CRD_FILE.read_text(), STALE


def test_rendering_is_deterministic_and_plain_yaml() -> None:
    text = render_crd()
    assert text == render_crd()
    assert "&id" not in text
    assert "*id" not in text
    assert [d for d in yaml.safe_load_all(text) if d] == [release_crd()]


def test_crd_is_a_valid_custom_resource_definition() -> None:
    kubernetes_validate.validate(load_crd(), K8S_VERSION, strict=True)


def test_crd_validation_catches_a_broken_definition() -> None:
    broken = copy.deepcopy(load_crd())
    broken["spec"]["scope"] = "Galaxy"
    broken["spec"]["versions"][0]["servd"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_names_scope_and_version_are_as_published() -> None:
    spec = load_crd()["spec"]
    assert load_crd()["metadata"]["name"] == "releases.kapistrano.dev"
    assert spec["group"] == "kapistrano.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "Release",
        "listKind": "ReleaseList",
        "plural": "releases",
        "singular": "release",
        "shortNames": ["rel"],
        "categories": ["all"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_are_as_published() -> None:
    (version,) = load_crd()["spec"]["versions"]
    columns = [(c["name"], c["type"], c["jsonPath"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Version", "string", ".spec.version", 0),
        ("Ready", "string", ".status.ready", 0),
        ("Phase", "string", ".status.phase", 0),
        ("Message", "string", ".status.message", 1),
        ("Age", "date", ".metadata.creationTimestamp", 0),
    ]


def test_top_level_has_the_object_envelope() -> None:
    schema = openapi_schema()
    assert schema["type"] == "object"
    assert schema["required"] == ["spec"]
    assert list(schema["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert schema["properties"]["metadata"] == {"type": "object"}, "an API server refuses any other metadata schema"


FORBIDDEN = ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const", "discriminator")


def test_schema_is_structural() -> None:
    for path, node in walk(openapi_schema()):
        assert not set(FORBIDDEN) & set(node), f"{path}: {set(FORBIDDEN) & set(node)}"
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert node.get("additionalProperties", {}) is not False, path
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", path
            assert not ("properties" in node and "additionalProperties" in node), path


def test_every_property_has_a_description() -> None:
    properties = [
        (f"{path}.{name}", prop)
        for path, node in walk(openapi_schema())
        for name, prop in node.get("properties", {}).items()
    ]
    assert len(properties) > 100
    missing = [path for path, prop in properties if not prop.get("description")]
    assert missing == [".metadata"], "only metadata, where an API server forbids a description"


def test_list_map_keys_are_required_or_defaulted_scalars() -> None:
    maps = {p: n for p, n in walk(openapi_schema()) if n.get("x-kubernetes-list-type") == "map"}
    assert set(maps) == {"spec.hosts", "spec.services", "status.hosts", "status.conditions"}
    for path, node in maps.items():
        item = node["items"]
        assert item["type"] == "object", path
        for key in node["x-kubernetes-list-map-keys"]:
            assert key in item.get("required", []) or "default" in item["properties"][key], f"{path}: {key}"
            assert item["properties"][key]["type"] in {"string", "integer"}, f"{path}: {key}"


def test_defaults_are_scalars_valid_for_their_own_field() -> None:
    for path, node in walk(openapi_schema()):
        if "default" in node:
            assert not isinstance(node["default"], (dict, list)), path
            plain = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
            jsonschema.validate(node["default"], plain)


def test_patterns_compile_as_re2_like_the_api_server() -> None:
    patterns = [(p, n["pattern"]) for p, n in walk(openapi_schema()) if "pattern" in n]
    assert len(patterns) > 10
    for path, pattern in patterns:
        assert re2.compile(pattern), path


def test_optional_fields_are_nullable_except_enums_and_fields_cel_checks_with_has() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["deployTo"]["nullable"] is True
    assert spec["strategy"]["properties"]["pauseAfterHosts"]["nullable"] is True
    source = spec["source"]["properties"]
    assert not any("nullable" in source[k] for k in ("git", "archive", "path"))
    pidfile = spec["services"]["items"]["properties"]["pidfile"]
    assert "nullable" not in pidfile
    assert "nullable" not in pidfile["properties"]["quietSignal"]


def rules_at(path: str) -> list[str]:
    """The CEL rules on the schema node at a field path."""
    nodes = dict(walk(openapi_schema()))
    return [r["rule"] for r in nodes[path].get("x-kubernetes-validations", [])]


def test_cel_rules_are_present_where_openapi_cannot_decide() -> None:
    assert any("has(self.git)" in r and "has(self.path)" in r for r in rules_at("spec.source"))
    assert any("has(self.exec)" in r and "has(self.tcpSocket)" in r for r in rules_at("spec.services[].readiness"))
    assert len(rules_at("spec.services[]")) == 4
    for manager in ("pidfile", "systemd", "graceful", "command"):
        assert any(f"has(self.{manager})" in r for r in rules_at("spec.services[]")), manager
    assert any("matches" in r for r in rules_at("spec.strategy.maxUnavailable"))
    assert any("contains('..')" in r for r in rules_at("spec.source.git.ref"))


def test_every_cel_rule_compiles() -> None:
    env = celpy.Environment()
    rules = [r["rule"] for _, n in walk(openapi_schema()) for r in n.get("x-kubernetes-validations", [])]
    assert len(rules) >= 8
    for rule in rules:
        env.compile(rule)


class _Undocumented(BaseModel):
    """A model whose field has no description."""

    name: str


class _Union(BaseModel):
    """A model with a union that has no structural form."""

    value: int | bool = Field(description="Either.")


def _convert(model: type[BaseModel]) -> dict[str, Any]:
    """Convert a small model the way crd.py converts the Release models."""
    raw = model.model_json_schema(by_alias=True)
    return convert_schema(raw, raw.pop("$defs", {}), model.__name__)


def test_conversion_refuses_a_property_without_description() -> None:
    with pytest.raises(SchemaConversionError, match=r"_Undocumented\.name has no description"):
        _convert(_Undocumented)


def test_conversion_refuses_a_union_without_structural_form() -> None:
    with pytest.raises(SchemaConversionError, match="no structural equivalent"):
        _convert(_Union)
