"""A sneakers-style RabbitMQ consumer (Ruby bunny) on three lab hosts, two instances each.

One RabbitMQ node for the module (slow to start). Each consumer takes one message at a time
(prefetch 1), acks after ~0.3 s of work, and on TERM finishes the message in hand, cancels and exits.
While v1 -> v2 -> v1 rolls out (in-process engine), the test publishes messages and samples the queue's
consumer count every 100 ms. One host at a time: never zero consumers, every message processed.
Every host at once (as `cap deploy` restarts): the samples show the queue without a consumer.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pika  # type: ignore[import-untyped]
import pytest
from kapistrano.lab import HostLab

from .kit import Loop, Sampler, Workload, report, running
from .servers import RabbitServer, wait_until

pytestmark = pytest.mark.workloads

APPLICATION = "consumer"
BOOT_SECONDS = 1  # the app's load time before it subscribes, the same in every test
PROCESSED = "log/processed.log"


def channel(rabbit: RabbitServer) -> Any:
    """A new blocking channel to the broker from the root namespace (network I/O)."""
    params = pika.URLParameters(rabbit.url("127.0.0.1") + "?heartbeat=0")
    return pika.BlockingConnection(params).channel()


def consumer_service(rabbit: RabbitServer, lab: HostLab, queue: str) -> dict[str, Any]:
    """Two consumer instances per host, TERM to stop, readiness once both subscribed (pure)."""
    pids = f"/var/www/{APPLICATION}/shared/tmp/pids"
    env = f"AMQP_URL={rabbit.url(lab.service_address)} QUEUE={queue} BOOT_SECONDS={BOOT_SECONDS}"
    env += f" PROCESSED_LOG=/var/www/{APPLICATION}/shared/{PROCESSED} READY_DIR={pids}"
    return {
        "name": "consumer",
        "manager": "pidfile",
        "instances": 2,
        "pidfile": {
            "path": "tmp/pids/consumer.{index}.pid",
            "start": f"exec env {env} ruby consumer.rb",
            "stopSignal": "TERM",
            "stopTimeoutSeconds": 20,
        },
        "readiness": {
            "exec": {"command": f"sh ready.sh {pids}"},
            "periodSeconds": 0.1,
            "timeoutSeconds": 5,
            "failureThreshold": 200,
        },
    }


class Publisher:
    """Publishes numbered persistent messages to the queue (its own connection; one thread)."""

    def __init__(self, rabbit: RabbitServer, queue: str) -> None:
        self.channel = channel(rabbit)
        self.queue = queue
        self.prefix = secrets.token_hex(3)
        self.ids: list[str] = []

    def publish(self, i: int) -> None:
        """Publish message number `i` (network I/O)."""
        body = f"{self.prefix}-{i}"
        props = pika.BasicProperties(delivery_mode=2)
        self.channel.basic_publish(exchange="", routing_key=self.queue, body=body.encode(), properties=props)
        self.ids.append(body)

    def close(self) -> None:
        """Close the connection."""
        self.channel.connection.close()


def processed(work: Workload, lab: HostLab) -> Counter[str]:
    """How many times each message id was processed, over every host's log (reads host files)."""
    seen: Counter[str] = Counter()
    for host in lab.hosts:
        path = work.shared(host.name, PROCESSED)
        if path.exists():
            seen.update(line.split()[0] for line in path.read_text().splitlines() if line.strip())
    return seen


@pytest.fixture
def queue(rabbit: RabbitServer) -> Iterator[str]:
    """A fresh durable queue for one test, deleted afterwards."""
    name = f"jobs-{secrets.token_hex(4)}"
    ch = channel(rabbit)
    ch.queue_declare(queue=name, durable=True)
    yield name
    ch.queue_delete(queue=name)
    ch.connection.close()


def rolling(
    lab: HostLab, rabbit: RabbitServer, queue: str, *, at_once: bool = False
) -> tuple[Sampler, Counter[str], list[str]]:
    """Deploy v1, then v2 and v1 again under load; the sampler, processed counts, published ids (processes)."""
    work = Workload(lab, "consumer", application=APPLICATION)
    service = [consumer_service(rabbit, lab, queue)]
    watch = channel(rabbit)
    try:
        work.apply_engine(work.manifest("v1", service, strategy={"maxUnavailable": "100%"}))

        def consumers() -> int:
            count: int = watch.queue_declare(queue=queue, passive=True).method.consumer_count
            return count

        wait_until(lambda: consumers() == 6, "six consumers on the queue", 30)
        sampler = Sampler(consumers, period=0.1)
        publisher = Publisher(rabbit, queue)
        producer = Loop(publisher.publish, period=0.05, limit=2000)
        try:
            with running(sampler, producer):
                for version in ("v2", "v1"):
                    if at_once:
                        document = work.manifest(version, service, strategy={"maxUnavailable": "100%"})
                        work.apply_cli_every_host_at_once(document)
                    else:
                        work.apply_engine(work.manifest(version, service, strategy={"maxUnavailable": 1}))
        finally:
            publisher.close()
        assert sampler.errors == []
        assert producer.errors == []
        for host in lab.hosts:
            assert work.current_version(host.name) == "v1", host.name
        ids = publisher.ids
        wait_until(lambda: set(ids) <= set(processed(work, lab)), "every message to be processed", 60, 0.2)
        return sampler, processed(work, lab), ids
    finally:
        watch.connection.close()
        work.close()


def test_one_host_at_a_time_never_leaves_the_queue_without_a_consumer(
    lab: HostLab, rabbit: RabbitServer, queue: str
) -> None:
    sampler, seen, ids = rolling(lab, rabbit, queue)

    values = sampler.values()
    assert len(values) >= 50, "too few samples to prove anything"
    assert sampler.max_gap() < 0.5, "the sampler stalled"
    assert min(values) >= 1, f"the queue had no consumer at some sample: {values}"
    assert set(ids) <= set(seen)
    duplicates = sum(seen[i] - 1 for i in ids)
    report(
        "rabbitmq one at a time",
        samples=len(values),
        min_consumers=min(values),
        max_consumers=max(values),
        messages=len(ids),
        processed=len(set(ids) & set(seen)),
        redelivered=duplicates,
    )


def test_every_host_at_once_leaves_the_queue_without_a_consumer(lab: HostLab, rabbit: RabbitServer, queue: str) -> None:
    sampler, seen, ids = rolling(lab, rabbit, queue, at_once=True)

    values = sampler.values()
    assert sampler.max_gap() < 0.5, "the sampler stalled"
    assert min(values) == 0, f"restarting every host at once never left the queue without a consumer: {values}"
    assert set(ids) <= set(seen)
    report(
        "rabbitmq every host at once",
        samples=len(values),
        min_consumers=min(values),
        zero_samples=values.count(0),
        seconds_without_consumer=round(sampler.zero_seconds(), 2),
        messages=len(ids),
    )
