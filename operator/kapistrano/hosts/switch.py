"""The switch of a publish in ONE remote script: find the release of a version, record its services, move `current`.

A pure `switch_command()` builds the script (every value quoted, passed as $1..), a pure
`parse_switch()` reads its report, and `switch` runs it. The switch itself is Capistrano's: a
symlink to a temp name renamed over `current`, so `current` is never missing.
"""

from __future__ import annotations

import posixpath
import secrets

from kapistrano.hosts.errors import CommandFailed
from kapistrano.hosts.layout import EXIT_NO_SUCH_RELEASE, Paths, ReleaseInfo, _one_line, _sh
from kapistrano.hosts.records import SERVICES_RECORD
from kapistrano.hosts.runner import Runner

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


def switch_command(
    deploy_to: str, version: str, *, release: str | None = None, record: str | None = None, suffix: str
) -> str:
    """Point `current` at `release`, else at the newest release whose marker holds `version` (pure).

    With `record`, the services record is written into that release first (a temp file renamed).
    """
    paths = Paths(deploy_to)
    name = posixpath.basename(paths.release(release)) if release else ""
    temp = posixpath.join(deploy_to, f"current_tmp_{suffix}")
    written = ("", "") if record is None else (_one_line(record), SERVICES_RECORD)
    return _sh(_SWITCH, paths.releases, version, name, temp, paths.current, *written)


def parse_switch(stdout: str, version: str) -> ReleaseInfo | None:
    """The release `current` was switched to, None when no release holds the version (pure)."""
    for line in stdout.splitlines():
        word, _, rest = line.partition("\t")
        if word == "switched":
            name, _, revision = rest.partition("\t")
            return ReleaseInfo(name, version, revision or None)
    return None


async def switch(
    runner: Runner, deploy_to: str, version: str, *, release: str | None = None, record: str | None = None
) -> ReleaseInfo | None:
    """Record the services and switch `current` in one round trip; None when no release holds the version.

    Side effects: the services record in the release, the current symlink.
    """
    command = switch_command(deploy_to, version, release=release, record=record, suffix=secrets.token_hex(6))
    result = await runner.run(command, check=False)
    if not result.ok:
        raise CommandFailed(runner.name, f"publish {release or version}", result.exit_status, result.stderr)
    return parse_switch(result.stdout, version)
