"""`kapistrano validate` on thousands of generated and mutated Releases: never a traceback, and
whatever the models accept the CRD schema (with its CEL rules) accepts too."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kapistrano.api.yamlfile import DocumentError, parse_documents
from kapistrano.cli.validate_cmd import check_documents

from .crdcheck import EXAMPLE_FILE, crd_errors

EXAMPLE: dict[str, Any] = yaml.safe_load(EXAMPLE_FILE.read_text())
SOURCE = Path("fuzz.yaml")

#: Values that sit on the edges of the patterns and types, mixed with arbitrary ones.
EDGE_TEXT = [
    "",
    "a",
    "-x",
    "--all",
    "22",
    "yes",
    "on",
    "true",
    "1%",
    "100%",
    "0%",
    "50%",
    "/health",
    "/h\u2713",
    "public",
    "public/uploads",
    "config",
    "config/database.yml",
    "log",
    "tmp/pids",
    "a/../b",
    ".hidden",
    "x" * 300,
    "TERM",
    "USR2",
    "pidfile",
    "systemd",
    "graceful",
    "command",
    "Rollback",
    "Halt",
    "Heal",
    "Report",
    "10.0.0.1",
    "::1",
    "h\x00",
    "a b",
    "sidekiq@*.service",
    "https://git.example.com/b.git",
    "deploy@host:repo.git",
    "v1.2.3",
]
scalars = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=20),
    st.integers(min_value=-3, max_value=70000),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(EDGE_TEXT), inner, max_size=3),
    max_leaves=6,
)


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a JSON-like document (pure)."""
    out = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            out += paths_of(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            out += paths_of(child, (*prefix, index))
    return out


PATHS = [p for p in paths_of(EXAMPLE) if p]


def _leaves(node: Any) -> list[Any]:
    """Every scalar of a document (pure)."""
    if isinstance(node, dict):
        return [leaf for child in node.values() for leaf in _leaves(child)]
    if isinstance(node, list):
        return [leaf for child in node for leaf in _leaves(child)]
    return [node]


#: Values taken from the example itself keep many mutants valid, so the CRD comparison runs often.
plausible = st.one_of(st.sampled_from(_leaves(EXAMPLE)), st.sampled_from(EDGE_TEXT), values)


def _child(node: Any, step: Any) -> Any:
    """node[step] when it exists, else None (pure)."""
    if isinstance(node, dict):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and step < len(node):
        return node[step]
    return None


def _change(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    """Set (or delete) the value at path, if its parent still exists (changes doc)."""
    *parents, last = path
    target = doc
    for step in parents:
        target = _child(target, step)
    if isinstance(target, dict):
        if delete:
            target.pop(last, None)
        else:
            target[last] = value
    elif isinstance(target, list) and isinstance(last, int) and last < len(target):
        target[last] = value


@st.composite
def mutated_releases(draw: st.DrawFn) -> Any:
    """The example with a few values replaced, removed or added at random places."""
    doc = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        _change(doc, draw(st.sampled_from(PATHS)), draw(plausible), draw(st.booleans()))
    return doc


def validate(documents: list[Any]) -> tuple[list[str], list[str]]:
    """What `kapistrano validate` says of the documents (in-process): summaries and problems."""
    summaries, problems, _ = check_documents(documents, SOURCE)
    return summaries, problems


def assert_models_and_crd_agree(document: Any) -> None:
    """A document the models accept passes the CRD's schema, list-map keys and CEL rules."""
    summaries, problems = validate([document])
    assert all("\n" not in line for line in summaries + problems)
    if summaries and not problems:
        assert crd_errors(json.loads(json.dumps(document))) == {"openapi": [], "listmap": [], "cel": []}, document


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_releases())
def test_mutated_releases_never_crash_and_what_the_models_accept_the_crd_accepts(document: Any) -> None:
    assert_models_and_crd_agree(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status"]), values))
def test_generated_documents_never_crash(document: Any) -> None:
    assert_models_and_crd_agree({"apiVersion": "kapistrano.dev/v1alpha1", "kind": "Release"} | document)


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=len(EXAMPLE_FILE.read_bytes())))
def test_mutated_bytes_give_problems_or_documents_never_a_traceback(noise: bytes, at: int) -> None:
    data = EXAMPLE_FILE.read_bytes()
    try:
        documents = parse_documents(data[:at] + noise + data[at:], str(SOURCE))
    except DocumentError as exc:
        problem = str(exc)
    else:
        validate(documents)
        return
    assert problem.startswith(f"{SOURCE}")
    assert "\n" not in problem
