"""The test API server's binary cache keeps the current binary and a few others, not every build."""

from __future__ import annotations

import os
from pathlib import Path

from kapistrano.lab.kubeserver import stale_binaries


def _binary(directory: Path, name: str, mtime: int) -> Path:
    path = directory / name
    path.write_bytes(b"\\x7fELF")
    os.utime(path, (mtime, mtime))
    return path


def test_only_binaries_of_other_sources_beyond_the_newest_two_are_stale(tmp_path: Path) -> None:
    current = _binary(tmp_path, "kube-test-cur", 100)
    _binary(tmp_path, "kube-test-b", 400)
    _binary(tmp_path, "kube-test-c", 300)
    old = _binary(tmp_path, "kube-test-d", 200)
    oldest = _binary(tmp_path, "kube-test-e", 50)
    (tmp_path / ".build.lock").write_text("")
    _binary(tmp_path, ".kube-test-f.123", 10)  # a build in progress of another checkout

    stale = stale_binaries(current)

    assert sorted(stale) == sorted([old, oldest])


def test_nothing_is_stale_when_the_cache_holds_few_binaries(tmp_path: Path) -> None:
    current = _binary(tmp_path, "kube-test-cur", 100)
    _binary(tmp_path, "kube-test-b", 400)
    assert stale_binaries(current) == []
    assert stale_binaries(current, keep=0) == [tmp_path / "kube-test-b"]
