"""The services record kept with a published release: written, read back, described (pure)."""

from __future__ import annotations

from kapistrano.api.spec import Service
from kapistrano.hosts.records import parse_services_record, parse_services_records, services_record
from kapistrano.hosts.services import describe_probes

WORKER = Service.model_validate(
    {
        "name": "worker",
        "instances": 2,
        "pidfile": {"path": "tmp/pids/w.{index}.pid", "start": "python3 worker.py"},
        "readiness": {"exec": {"command": "test -e READY"}},
    }
)


def test_a_record_reads_back_as_the_services_it_was_written_from() -> None:
    record = services_record([WORKER])
    assert "\n" not in record
    assert parse_services_record(record) == [WORKER]


def test_a_missing_or_unreadable_record_means_the_spec_judges() -> None:
    assert parse_services_record(None) is None
    assert parse_services_record("{not json") is None
    assert parse_services_record('[{"name": "w", "unknownField": 1}]') is None


def test_records_are_read_per_release() -> None:
    records = parse_services_records("20260101000000\t[]\nnot-a-release\t[]\n")
    assert records == {"20260101000000": "[]"}


def test_probes_are_described_per_service() -> None:
    assert describe_probes([WORKER]) == "worker: exec: test -e READY"
    assert describe_probes([]) == "no services"
