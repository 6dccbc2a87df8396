"""The services record: the services spec a release was published with, kept in its directory.

A host is judged (status, readiness) by the record of the release it runs, and what a release's
record names but the spec does not is an orphan to stop. Releases laid out by Capistrano or an
older kapistrano have no record: the spec judges them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import ValidationError

from kapistrano.api.spec import Service
from kapistrano.hosts.layout import RELEASE_NAME, Paths, _one_line, _sh
from kapistrano.hosts.runner import Runner

#: One line of JSON in the release directory.
SERVICES_RECORD = ".kapistrano-services.json"


def services_record(services: Sequence[Service]) -> str:
    """The record kept with a published release: its services spec as one line of JSON (pure)."""
    dumped = [s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in services]
    return json.dumps(dumped, separators=(",", ":"), sort_keys=True)


def parse_services_record(text: str | None) -> list[Service] | None:
    """The services a record holds; None without a record or when this version cannot read it (pure)."""
    if not text:
        return None
    try:
        items = json.loads(text)
        return [Service.model_validate(item) for item in items] if isinstance(items, list) else None
    except (ValueError, TypeError, ValidationError):
        return None


def write_services_record_command(release_dir: str, record: str) -> str:
    """Write the services record into a release, atomically (a temp file renamed over it) (pure)."""
    body = 'printf "%s\\n" "$2" > "$1/$3.tmp" && mv -f -- "$1/$3.tmp" "$1/$3"'
    return _sh(body, release_dir, _one_line(record), SERVICES_RECORD)


async def write_services_record(runner: Runner, release_dir: str, record: str) -> None:
    """Record the services spec a release is published with (side effect: a file in the release)."""
    await runner.run(write_services_record_command(release_dir, record))


_RECORDS = r"""
cd -- "$1" 2>/dev/null || exit 0
for d in */; do
  r=; [ -f "$d.kapistrano-services.json" ] || continue
  { IFS= read -r r || :; } < "$d.kapistrano-services.json" && printf '%s\t%s\n' "${d%/}" "$r"
done
exit 0
"""


def services_records_command(deploy_to: str) -> str:
    """Print `<release>\t<record>` for every release holding a services record, in ONE command (pure)."""
    return _sh(_RECORDS, Paths(deploy_to).releases)


def parse_services_records(stdout: str) -> dict[str, str]:
    """Release name -> its services record text (pure)."""
    found = {}
    for line in stdout.splitlines():
        name, sep, record = line.partition("\t")
        if sep and RELEASE_NAME.fullmatch(name) and record:
            found[name] = record
    return found


async def read_services_records(runner: Runner, deploy_to: str) -> dict[str, str]:
    """The services record of every release that has one (side effects: none)."""
    return parse_services_records((await runner.run(services_records_command(deploy_to))).stdout)
