"""Fixtures of the workload tests: one redis-server and one RabbitMQ node per test module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from .servers import RabbitServer, RedisServer, rabbit_server, redis_server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A redis-server of this module's tests on a free port (stopped by pid afterwards)."""
    if shutil.which("redis-server") is None or shutil.which("sidekiq") is None:
        pytest.skip("redis-server or sidekiq (Debian ruby-sidekiq) is not installed")
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def rabbit() -> Iterator[RabbitServer]:
    """A RabbitMQ node of this module's tests on free ports (node and epmd stopped by pid afterwards)."""
    pytest.importorskip("pika")
    from .servers import RABBITMQ_SERVER  # noqa: PLC0415

    if not RABBITMQ_SERVER.exists():
        pytest.skip("rabbitmq-server is not installed")
    with rabbit_server() as server:
        yield server
