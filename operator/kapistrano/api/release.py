"""The Release object as a whole (apiVersion, kind, metadata, spec, status) and file loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import ReleaseStatus
from kapistrano.api.types import PATTERN_HINTS
from kapistrano.api.yamlfile import DocumentError, read_documents

GROUP = "kapistrano.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Release"
PLURAL = "releases"
#: Annotation that asks for a rolling restart without a version change (kubectl kapistrano restart);
#: its value, an RFC 3339 time, is the request's identity and ends up in status.restartedAt.
RESTART_ANNOTATION = f"{GROUP}/restartedAt"
#: Annotation whose every new value asks the operator to try a failed spec.version again.
RETRY_ANNOTATION = f"{GROUP}/retry"
#: Annotation whose presence holds the rollout like spec.paused; removing it resumes.
PAUSE_ANNOTATION = f"{GROUP}/pause"
#: Annotation whose every new value lets the rollout go on past its pauseAfterHosts stop.
PROMOTE_ANNOTATION = f"{GROUP}/promote"
#: Annotation whose every new value stops the rollout and rolls updated hosts back to status.currentVersion.
ABORT_ANNOTATION = f"{GROUP}/abort"
#: Why a request was made, recorded with it.
REASON_ANNOTATION = f"{GROUP}/reason"


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta kapistrano reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class Release(BaseModel):
    """A kapistrano.dev/v1alpha1 Release."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: str = Field(alias="apiVersion", pattern=rf"^{GROUP}/{VERSION}$")
    kind: str = Field(pattern=rf"^{KIND}$")
    metadata: ObjectMeta
    spec: ReleaseSpec
    status: ReleaseStatus | None = None


class ReleaseFileError(Exception):
    """A Release file that cannot be read; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


#: Location parts pydantic adds for union members and validators; they are not field names.
_TAG_PARTS = frozenset({"int", "str", "bool", "float", "constrained-str", "lax-or-strict", "list", "dict"})


def _path_of(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a field path like spec.hosts[1].name (pure)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TAG_PARTS or part.startswith("function-") or "[" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out


def _message_of(err: ErrorDetails) -> str:
    """A readable message for one pydantic error, with pattern errors explained (pure)."""
    if err["type"] == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        return PATTERN_HINTS.get(pattern, err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; fields are camelCase)"
    return err["msg"].removeprefix("Value error, ")


def problems_of(error: ValidationError) -> list[str]:
    """One readable line per validation problem, each naming the field path (pure)."""
    lines: dict[str, str] = {}
    for err in error.errors():
        path = _path_of(tuple(err["loc"])) or "(document)"
        # A union reports one error per member at the same path; the first says enough.
        lines.setdefault(path, f"{path}: {_message_of(err)}")
    return list(lines.values())


def parse_release(document: Any) -> Release:
    """Validate one decoded YAML/JSON document as a Release (pure); raises ReleaseFileError."""
    if not isinstance(document, dict):
        raise ReleaseFileError(["(document): expected a mapping with apiVersion, kind, metadata and spec"])
    try:
        return Release.model_validate(document)
    except ValidationError as exc:
        raise ReleaseFileError(problems_of(exc)) from None


def load_releases(path: Path) -> list[Release]:
    """Read every Release document in a YAML file (reads the file); raises ReleaseFileError."""
    try:
        docs = read_documents(path)
    except DocumentError as exc:
        raise ReleaseFileError([str(exc)]) from None
    releases = [parse_release(d) for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if not releases:
        raise ReleaseFileError([f"{path}: no document of kind {KIND}"])
    return releases
