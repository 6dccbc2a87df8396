"""Fetching a release's files on the host, and the parallel updating phase.

git works like Capistrano's git strategy: a mirror in <deployTo>/repo (cloned once, then
`git remote update --prune`), the ref resolved to a commit, exported with `git archive | tar`.
archive: the host downloads (curl, else wget) to a temp file and checks sha256 BEFORE unpacking.
path: a directory already on the host is copied. Every value reaches the shell quoted, as $1.. of a
fixed script.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kapistrano.api.spec import ReleaseSpec, Source
from kapistrano.hosts import layout
from kapistrano.hosts.errors import CommandFailed, HostError, SourceError
from kapistrano.hosts.runner import CommandResult, Runner
from kapistrano.hosts.shell import SECTION, cmd, split_sections
from kapistrano.hosts.steps import Step, run_steps, steps_command

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 10
EXIT_DOWNLOAD = 81
EXIT_NO_DOWNLOADER = 82
EXIT_SHA_MISMATCH = 83
EXIT_UNPACK = 84
EXIT_NO_PATH = 85


def _sh(body: str, *args: str | int) -> str:
    """A script run by POSIX sh with values as $1.. (pure)."""
    return cmd("sh", "-c", body, "sh", *args)


# -- git ---------------------------------------------------------------------------------------------

_MIRROR = r"""
set -e
export GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=/bin/echo
if [ -f "$1/HEAD" ]; then
  cd -- "$1"
  git remote set-url -- origin "$2"
  git remote update --prune
else
  git clone --mirror --quiet -- "$2" "$1"
fi
"""

_EXPORT = r"""
set -e
cd -- "$1"
flag="$3/.kapistrano-git-archive-failed"
{ git archive --format=tar --end-of-options "$2" || true > "$flag"; } | tar -x -f - -C "$3"
if [ -e "$flag" ]; then rm -f -- "$flag"; echo "git archive $2 failed" >&2; exit 1; fi
"""


def mirror_command(deploy_to: str, url: str) -> str:
    """Clone the mirror once, then update it with pruning, like Capistrano (pure)."""
    return _sh(_MIRROR, layout.Paths(deploy_to).repo, url)


def resolve_command(deploy_to: str, ref: str) -> str:
    """Resolve a ref to a commit sha in the mirror (pure)."""
    body = 'cd -- "$1" && git rev-parse --verify --quiet --end-of-options "$2^{commit}"'
    return _sh(body, layout.Paths(deploy_to).repo, ref)


def export_command(deploy_to: str, sha: str, release_dir: str) -> str:
    """Export a commit's tree into the release directory: `git archive | tar -x` (pure)."""
    return _sh(_EXPORT, layout.Paths(deploy_to).repo, sha, release_dir)


def parse_sha(stdout: str) -> str | None:
    """The 40/64-hex commit id printed by rev-parse, None otherwise (pure)."""
    sha = stdout.strip()
    ok = len(sha) in (40, 64) and all(c in "0123456789abcdef" for c in sha)
    return sha if ok else None


async def fetch_git(runner: Runner, deploy_to: str, url: str, ref: str, release_dir: str) -> str:
    """Update the mirror and export `ref` into the release; returns the commit sha (side effects)."""
    if ref.startswith("-") or not ref:
        raise SourceError(runner.name, f"invalid git ref {ref!r}")
    mirrored = await runner.run(mirror_command(deploy_to, url), check=False)
    if not mirrored.ok:
        raise SourceError(runner.name, f"cannot fetch {url}: {_tail(mirrored)}")
    resolved = await runner.run(resolve_command(deploy_to, ref), check=False)
    sha = parse_sha(resolved.stdout) if resolved.ok else None
    if sha is None:
        raise SourceError(runner.name, f"git ref {ref!r} does not exist in {url}")
    await runner.run(export_command(deploy_to, sha, release_dir))
    return sha


def _tail(result: CommandResult, limit: int = 400) -> str:
    """The end of a command's stderr (or stdout) for messages (pure)."""
    text = (result.stderr.strip() or result.stdout.strip()).replace("\n", " | ")
    return text[-limit:] if text else f"exit status {result.exit_status}"


# -- archive -----------------------------------------------------------------------------------------

_DOWNLOAD = r"""
set -e
url=$1 expected=$2 release=$3 strip=$4 deploy=$5
tmp=$(mktemp "$deploy/.kapistrano-download.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 2 -o "$tmp" --url "$url" || exit 81
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "$tmp" -- "$url" || exit 81
else
  echo "neither curl nor wget is installed" >&2; exit 82
fi
actual=$(sha256sum -- "$tmp" | cut -d ' ' -f 1)
if [ "$actual" != "$expected" ]; then printf 'sha256-mismatch\t%s\n' "$actual" >&2; exit 83; fi
tar -x -f "$tmp" -C "$release" --strip-components="$strip" || exit 84
"""


def download_command(deploy_to: str, url: str, sha256: str, release_dir: str, strip_components: int = 0) -> str:
    """Download to a temp file, verify sha256, only then unpack into the release (pure)."""
    return _sh(_DOWNLOAD, url, sha256.lower(), release_dir, int(strip_components), deploy_to)


def parse_download_failure(host: str, url: str, expected: str, result: CommandResult) -> HostError:
    """The error a failed download script reported (pure)."""
    status = result.exit_status
    if status == EXIT_SHA_MISMATCH:
        actual = next((ln.split("\t", 1)[1] for ln in result.stderr.splitlines() if ln.startswith("sha256-")), "?")
        return SourceError(host, f"sha256 mismatch for {url}: expected {expected.lower()}, got {actual}")
    if status == EXIT_DOWNLOAD:
        return SourceError(host, f"download of {url} failed: {_tail(result)}")
    if status == EXIT_NO_DOWNLOADER:
        return SourceError(host, "neither curl nor wget is installed on the host")
    if status == EXIT_UNPACK:
        return SourceError(host, f"cannot unpack {url}: {_tail(result)}")
    return CommandFailed(host, f"fetch {url}", status, result.stderr)


def archive_step(deploy_to: str, url: str, sha256: str, release_dir: str, *, strip_components: int = 0) -> Step:
    """Download, verify and unpack an archive into the release (pure)."""

    def failure(host: str, result: CommandResult) -> HostError:
        return parse_download_failure(host, url, sha256, result)

    return Step("fetch " + url, download_command(deploy_to, url, sha256, release_dir, strip_components), failure)


async def fetch_archive(
    runner: Runner, deploy_to: str, url: str, sha256: str, release_dir: str, *, strip_components: int = 0
) -> str:
    """Download, verify and unpack an archive; returns its sha256 as the revision (side effects)."""
    await run_steps(runner, [archive_step(deploy_to, url, sha256, release_dir, strip_components=strip_components)])
    return sha256.lower()


# -- path --------------------------------------------------------------------------------------------

_COPY = r"""
[ -d "$1" ] || { printf 'source directory %s does not exist on the host\n' "$1" >&2; exit 85; }
cp -a -- "$1/." "$2/"
"""


def copy_command(source_dir: str, release_dir: str) -> str:
    """Copy a directory on the host into the release (pure)."""
    return _sh(_COPY, source_dir, release_dir)


def path_step(source_dir: str, release_dir: str) -> Step:
    """Copy a host directory into the release (pure)."""

    def failure(host: str, result: CommandResult) -> HostError | None:
        if result.exit_status == EXIT_NO_PATH:
            return SourceError(host, f"source directory {source_dir} does not exist on the host")
        return None

    return Step(f"copy {source_dir}", copy_command(source_dir, release_dir), failure)


async def fetch_path(runner: Runner, source_dir: str, release_dir: str) -> None:
    """Copy a host directory into the release (side effects: files)."""
    await run_steps(runner, [path_step(source_dir, release_dir)])


# -- the updating phase ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateInputs:
    """What the updating phase needs from a Release spec (pure data)."""

    deploy_to: str
    version: str
    source: Source
    git_ref: str | None = None
    linked_dirs: tuple[str, ...] = ()
    linked_files: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: ReleaseSpec) -> UpdateInputs:
        """The inputs of a Release spec (pure)."""
        return cls(
            deploy_to=spec.deploy_path,
            version=spec.version,
            source=spec.source,
            git_ref=spec.git_ref,
            linked_dirs=tuple(spec.linked_dirs),
            linked_files=tuple(spec.linked_files),
        )


@dataclass(frozen=True)
class HostUpdate:
    """The outcome of the updating phase on one host."""

    host: str
    release: str | None = None
    revision: str | None = None
    reused: bool = False
    error: Exception | None = field(default=None)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the host has a complete release for the version (pure)."""
        return self.error is None and self.release is not None


def fetch_step(inputs: UpdateInputs, release_dir: str) -> tuple[Step, str] | None:
    """The step fetching a path or archive source with the revision it gives; None for git (pure)."""
    source = inputs.source
    if source.archive is not None:
        archive = source.archive
        step = archive_step(
            inputs.deploy_to, archive.url, archive.sha256, release_dir, strip_components=archive.strip_components
        )
        return step, archive.sha256.lower()
    if source.path is not None:
        return path_step(source.path, release_dir), inputs.version
    return None


async def fetch_source(runner: Runner, inputs: UpdateInputs, release_dir: str) -> str:
    """Fetch the release's files into release_dir; returns the revision (side effects)."""
    fetched = fetch_step(inputs, release_dir)
    if fetched is not None:
        await run_steps(runner, [fetched[0]])
        return fetched[1]
    return await _fetch_git(runner, inputs, release_dir)


async def _fetch_git(runner: Runner, inputs: UpdateInputs, release_dir: str) -> str:
    """Fetch a git source into release_dir; returns the commit (side effects)."""
    git = inputs.source.git
    if git is None:
        raise SourceError(runner.name, "the release has no source (git, archive or path)")
    return await fetch_git(runner, inputs.deploy_to, git.url, inputs.git_ref or git.ref or inputs.version, release_dir)


def survey_steps(inputs: UpdateInputs) -> list[Step]:
    """Prepare deployTo, then list the complete releases and every release directory (pure)."""

    def failure(host: str, result: CommandResult) -> HostError | None:
        return layout.parse_prepare_failure(host, result.exit_status, result.stderr)

    deploy_to = inputs.deploy_to
    prepare = layout.prepare_command(deploy_to, inputs.linked_dirs, inputs.linked_files)
    markers = f"echo {SECTION} markers\n" + layout.release_markers_command(deploy_to)
    names = f"echo {SECTION} releases\n" + layout.list_releases_command(deploy_to)
    return [Step("prepare " + deploy_to, prepare, failure), Step("read releases", markers), Step("list", names)]


#: What a survey found: the complete release of the version, if any, and every release name.
Surveyed = tuple[layout.ReleaseInfo | None, list[str]]


def survey_command(inputs: UpdateInputs) -> str:
    """The survey's steps as one command line, to run after another script (a lock) (pure)."""
    return steps_command(survey_steps(inputs))


def parse_survey(stdout: str, inputs: UpdateInputs) -> Surveyed:
    """What a survey's output says (pure)."""
    sections = split_sections(stdout)
    infos = layout.parse_release_markers(sections.get("markers", ""))
    return layout.pick_release_for_version(infos, inputs.version), layout.parse_releases(sections.get("releases", ""))


async def survey(runner: Runner, inputs: UpdateInputs) -> Surveyed:
    """Prepare deployTo; the complete release of the version, if any, and every release name (side effects)."""
    return parse_survey((await run_steps(runner, survey_steps(inputs))).stdout, inputs)


def build_steps(inputs: UpdateInputs, release_dir: str, revision: str, *, complete: bool) -> list[Step]:
    """Link shared/ into a fetched release and write its REVISION, then (if `complete`) its version (pure)."""
    steps = [*layout.link_steps(inputs.deploy_to, release_dir, inputs.linked_dirs, inputs.linked_files)]
    steps.append(layout.revision_step(release_dir, revision))
    return [*steps, layout.complete_step(release_dir, inputs.version)] if complete else steps


async def update_host(
    runner: Runner,
    inputs: UpdateInputs,
    now: datetime | None = None,
    *,
    before_complete: Callable[[str], Awaitable[None]] | None = None,
    surveyed: Surveyed | None = None,
) -> HostUpdate:
    """Prepare, then reuse or build the release for inputs.version (side effects); raises HostError.

    Takes no lock: the caller holds the host lock. A release is complete once its version marker
    exists, written after `before_complete` (the afterUpdate hooks) ran on the release directory;
    a failed or interrupted build removes its directory, and one killed outright has no marker, so a
    half-made release is never reused. Steps that follow one another share one remote command: a
    path or archive release without hooks is built in two (the survey, then the build); `surveyed`
    is a survey made already (with the lock confirmation), which leaves the build.
    """
    started = time.monotonic()
    found, existing = surveyed if surveyed is not None else await survey(runner, inputs)
    if found is not None:
        elapsed = time.monotonic() - started
        return HostUpdate(runner.name, found.name, found.revision, reused=True, seconds=elapsed)
    name = layout.new_release_name(now or datetime.now(UTC), existing)
    release_dir = layout.Paths(inputs.deploy_to).release(name)
    try:
        revision = await _build(runner, inputs, release_dir, complete=before_complete is None)
        if before_complete is not None:
            await before_complete(release_dir)
            await run_steps(runner, [layout.complete_step(release_dir, inputs.version)])
    except HostError as failed:
        if failed.step != "create":  # a directory that was there already is not ours to remove
            await _discard(runner, inputs.deploy_to, name)
        raise
    except BaseException:
        await _discard(runner, inputs.deploy_to, name)
        raise
    return HostUpdate(runner.name, name, revision, reused=False, seconds=time.monotonic() - started)


async def _build(runner: Runner, inputs: UpdateInputs, release_dir: str, *, complete: bool) -> str:
    """Create the release directory, fetch into it, link and mark it; returns the revision (side effects)."""
    create = layout.create_step(release_dir)
    fetched = fetch_step(inputs, release_dir)
    if fetched is None:  # git: the commit is known once the mirror resolved the ref
        await run_steps(runner, [create])
        revision = await _fetch_git(runner, inputs, release_dir)
        await run_steps(runner, build_steps(inputs, release_dir, revision, complete=complete))
        return revision
    step, revision = fetched
    await run_steps(runner, [create, step, *build_steps(inputs, release_dir, revision, complete=complete)])
    return revision


async def _discard(runner: Runner, deploy_to: str, name: str) -> None:
    """Remove a half-made release, never masking the error that caused it (side effect)."""
    try:
        await layout.remove_release(runner, deploy_to, name)
    except Exception as exc:  # the original failure matters more
        log.warning("%s: could not remove half-made release %s: %s", runner.name, name, exc)


async def update_hosts(
    runners: Iterable[Runner],
    inputs: UpdateInputs,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    now: datetime | None = None,
) -> Mapping[str, HostUpdate]:
    """Run the updating phase on many hosts at once, at most `concurrency` at a time (side effects).

    Errors are captured per host in HostUpdate.error; one host failing never stops the others.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(runner: Runner) -> HostUpdate:
        async with gate:
            started = time.monotonic()
            try:
                return await update_host(runner, inputs, now)
            except Exception as exc:
                return HostUpdate(runner.name, error=exc, seconds=time.monotonic() - started)

    results = await asyncio.gather(*(one(r) for r in runners))
    return {result.host: result for result in results}
