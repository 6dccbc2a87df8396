"""Reading Release files: strict YAML (no duplicate keys, bounded nesting, UTF-8 only), one line per problem.

PyYAML alone lets the last of two equal keys win silently, turns unquoted dates into date objects,
and overflows Python's stack on deeply nested input. The loader here refuses duplicate keys, keeps
dates as the strings the API server would store, and stops at MAX_DEPTH levels of nesting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

#: Far deeper than any Release (about 8 levels), far shallower than Python's recursion limit.
MAX_DEPTH = 64


class DocumentError(Exception):
    """A file that is not readable as YAML; the message is one line."""


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """Compose one node, counting how deep it is (raises on MAX_DEPTH)."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing a key given twice (raises ConstructorError)."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float)):
                continue  # merge keys and complex keys are left to PyYAML
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Dates stay strings: the API server stores what kubectl sends, and JSON has no date type.
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    """A YAML error on one line, as source:line:column: problem (pure)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{source}:{mark.line + 1}:{mark.column + 1}: {exc.problem}"
    return f"{source}: {' '.join(str(exc).split())}"


def parse_documents(data: bytes, source: str) -> list[Any]:
    """Every non-empty YAML document in `data` (pure); raises DocumentError with one line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        return [d for d in yaml.load_all(text, Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_problem(source, exc)) from None
    except RecursionError:
        raise DocumentError(f"{source}: nested too deeply") from None


def read_documents(path: Path) -> list[Any]:
    """Every non-empty YAML document of a file (reads the file); raises DocumentError with one line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: {exc.strerror or exc}") from None
    return parse_documents(data, str(path))
