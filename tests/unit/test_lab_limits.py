"""The lab's kernel and process limits: what a lab of N hosts needs raised, never lowered."""

from __future__ import annotations

import resource
from pathlib import Path

from kapistrano.hosts.hub import FILES_HEADROOM, connections_fit, fit_connections, soft_files_limit
from kapistrano.lab import limits

STOCK = {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024}


def test_a_small_lab_on_a_stock_kernel_changes_no_neighbour_threshold() -> None:
    assert limits.neighbour_thresholds(100, STOCK) == {}


def test_500_hosts_get_room_for_both_ends_of_every_link_twice_over() -> None:
    assert limits.neighbour_thresholds(500, STOCK) == {"gc_thresh2": 1256, "gc_thresh3": 2512}


def test_thresholds_already_higher_are_never_lowered() -> None:
    high = {"gc_thresh1": 128, "gc_thresh2": 1300, "gc_thresh3": 9000}
    assert limits.neighbour_thresholds(500, high) == {}
    assert limits.neighbour_thresholds(600, high) == {"gc_thresh2": 1456}


def test_open_files_are_raised_for_a_large_lab_within_the_hard_limit() -> None:
    assert limits.open_files_limit(50, soft=1024, hard=4096) == 1424
    assert limits.open_files_limit(1000, soft=1024, hard=4096) == 4096
    assert limits.open_files_limit(1000, soft=1024, hard=resource.RLIM_INFINITY) == 9024
    assert limits.open_files_limit(10, soft=20000, hard=20000) is None


def test_raise_limits_writes_the_raised_thresholds_and_keeps_the_others(tmp_path: Path) -> None:
    for name, value in STOCK.items():
        (tmp_path / name).write_text(f"{value}\n")
    changed = limits.raise_limits(500, directory=tmp_path)
    assert limits.read_thresholds(tmp_path) == {"gc_thresh1": 128, "gc_thresh2": 1256, "gc_thresh3": 2512}
    assert {k: v for k, v in changed.items() if k.startswith("gc_")} == {"gc_thresh2": 1256, "gc_thresh3": 2512}


def test_the_operator_raises_its_open_files_for_its_connections_and_keeps_what_fits() -> None:
    assert soft_files_limit(1256, soft=1024, hard=4096) == 1256
    assert soft_files_limit(1256, soft=2048, hard=4096) is None
    assert connections_fit(1000, soft=1024, hard=4096) == (1000 + FILES_HEADROOM, 1000)
    assert connections_fit(1000, soft=1024, hard=1100) == (1100, 1100 - FILES_HEADROOM), "what the hard limit leaves"
    assert connections_fit(1000, soft=4096, hard=4096) == (None, 1000)
    assert connections_fit(10, soft=100, hard=100) == (None, 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        expected = connections_fit(1000, 1024, hard)
        assert fit_connections(1000) == expected[1]
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == (expected[0] or 1024)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
