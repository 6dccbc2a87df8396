"""The switch of a publish in ONE remote script: find the release of a version, record its services, move `current`.

A pure `switch_command()` builds the script (every value quoted, passed as $1..), a pure
`parse_switch()` reads its report, and `switch` runs it. The switch itself is Capistrano's: a
symlink to a temp name renamed over `current`, so `current` is never missing. The same script then
reads the services records and the pid files given, for the orphans the publish stops afterwards.
"""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Sequence

from kapistrano.hosts import facts
from kapistrano.hosts.errors import CommandFailed
from kapistrano.hosts.layout import EXIT_NO_SUCH_RELEASE, Paths, ReleaseInfo, _one_line
from kapistrano.hosts.managers.base import ServiceContext, remote_script
from kapistrano.hosts.records import _RECORDS, SERVICES_RECORD, parse_services_records
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import section, split_sections

_SWITCH = rf"""set -e
releases=$1 version=$2 name=$3 temp=$4 current=$5 record=$6 recorded=$7
if [ -z "$name" ]; then
  for d in "$releases"/*/; do
    d=${{d%/}}
    [ -f "$d/.kapistrano-version" ] || continue
    [ "$(head -n 1 -- "$d/.kapistrano-version")" = "$version" ] && name=${{d##*/}}
  done
fi
[ -n "$name" ] || {{ echo none; exit 0; }}
dir=$releases/$name
[ -d "$dir" ] || {{ printf 'no such release: %s\n' "$dir" >&2; exit {EXIT_NO_SUCH_RELEASE}; }}
rev=; [ -f "$dir/REVISION" ] && rev=$(head -n 1 -- "$dir/REVISION")
if [ -n "$recorded" ]; then
  printf '%s\n' "$record" > "$dir/$recorded.tmp"
  mv -f -- "$dir/$recorded.tmp" "$dir/$recorded"
fi
ln -sfn -- "$dir" "$temp"
mv -fT -- "$temp" "$current"
printf 'switched\t%s\t%s\n' "$name" "$rev"
"""


def switch_lines(
    deploy_to: str, version: str, *, release: str | None = None, record: str | None = None, suffix: str
) -> list[str]:
    """Script lines pointing `current` at `release`, else at the newest release whose marker holds `version` (pure).

    With `record`, the services record is written into that release first (a temp file renamed). A
    failure ends the whole script with the switch's exit status.
    """
    paths = Paths(deploy_to)
    name = posixpath.basename(paths.release(release)) if release else ""
    temp = posixpath.join(deploy_to, f"current_tmp_{suffix}")
    written = ("", "") if record is None else (_one_line(record), SERVICES_RECORD)
    lines = section("switch", _SWITCH, paths.releases, version, name, temp, paths.current, *written)
    return [*lines[:-1], lines[-1] + " || exit $?"]


def switch_command(
    ctx: ServiceContext,
    version: str,
    *,
    release: str | None = None,
    record: str | None = None,
    pidfiles: Sequence[str] = (),
    suffix: str,
) -> str:
    """The switch, then the services records and the pid files given, in ONE command (pure)."""
    lines = switch_lines(ctx.deploy_to, version, release=release, record=record, suffix=suffix)
    releases = Paths(ctx.deploy_to).releases
    return remote_script(ctx, [*lines, *section("records", _RECORDS, releases), *facts.pid_lines(pidfiles), "true"])


def parse_switch(stdout: str, version: str) -> ReleaseInfo | None:
    """The release `current` was switched to, None when no release holds the version (pure)."""
    for line in split_sections(stdout).get("switch", "").splitlines():
        word, _, rest = line.partition("\t")
        if word == "switched":
            name, _, revision = rest.partition("\t")
            return ReleaseInfo(name, version, revision or None)
    return None


async def switch(
    runner: Runner,
    ctx: ServiceContext,
    version: str,
    *,
    release: str | None = None,
    record: str | None = None,
    pidfiles: Sequence[str] = (),
) -> tuple[ReleaseInfo | None, facts.HostFacts]:
    """Record the services and switch `current`, then read records and pid files, in one round trip.

    The release is None when no release holds the version. Side effects: the services record in
    the release, the current symlink.
    """
    wanted = list(dict.fromkeys(pidfiles))
    command = switch_command(ctx, version, release=release, record=record, pidfiles=wanted, suffix=secrets.token_hex(6))
    result = await runner.run(command, check=False)
    if not result.ok:
        raise CommandFailed(runner.name, f"publish {release or version}", result.exit_status, result.stderr)
    sections = split_sections(result.stdout)
    seen = facts.HostFacts(
        records=parse_services_records(sections.get("records", "")),
        pids=facts.parse_pids(sections.get("pids", ""), wanted),
    )
    return parse_switch(result.stdout, version), seen
