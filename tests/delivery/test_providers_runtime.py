"""The per-process runtime that lets synchronous Celery tasks use the async senders."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import threading
from collections.abc import Iterator

import pytest

from delivery.providers import runtime
from delivery.providers.base import Outcome, OutgoingPush
from tests.delivery.conftest import APNS_PAYLOAD, FCM_PAYLOAD, apns_token, fcm_token


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    runtime.shutdown()
    yield
    runtime.shutdown()


def apns_pushes(start: int, count: int) -> list[OutgoingPush]:
    return [OutgoingPush(f"a{i}", apns_token(i), APNS_PAYLOAD) for i in range(start, start + count)]


def test_batches_from_sync_code_reuse_one_sender_and_connection(sim, apns_config, fcm_config):
    first = runtime.send_batch(apns_config, apns_pushes(0, 20))
    second = runtime.send_batch(apns_config, apns_pushes(20, 20))
    fcm = runtime.send_batch(fcm_config, [OutgoingPush("f1", fcm_token(1), FCM_PAYLOAD)])

    assert [r.outcome for r in first + second + fcm] == [Outcome.SENT] * 41
    assert runtime.get_sender(apns_config) is runtime.get_sender(dataclasses.replace(apns_config))
    assert runtime.get_sender(apns_config) is not runtime.get_sender(fcm_config)
    stats = sim.stats()
    assert (stats["apns"]["connections"], stats["apns"]["auth_tokens"]) == (1, 1)
    assert stats["fcm"]["auth_tokens"] == 1


def test_batches_from_several_threads_share_the_sender(sim, apns_config):
    results: dict[int, list[Outcome]] = {}

    def worker(n: int) -> None:
        results[n] = [r.outcome for r in runtime.send_batch(apns_config, apns_pushes(n * 10, 10))]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == {n: [Outcome.SENT] * 10 for n in range(4)}
    stats = sim.stats()["apns"]
    assert (stats["accepted"], stats["duplicates"], stats["connections"]) == (40, 0, 1)


def test_several_providers_in_one_call_keep_their_order(sim, apns_config, fcm_config):
    """A mixed sub-batch goes out in one call (both providers in flight together);
    each job gets its own results back, in its own order."""
    apns, fcm, empty = runtime.send_batches(
        [
            (apns_config, apns_pushes(100, 3)),
            (fcm_config, [OutgoingPush(f"f{i}", fcm_token(i), FCM_PAYLOAD) for i in range(3)]),
            (fcm_config, []),
        ]
    )
    assert [r.ref for r in apns] == ["a100", "a101", "a102"]
    assert [r.ref for r in fcm] == ["f0", "f1", "f2"]
    assert {r.outcome for r in apns + fcm} == {Outcome.SENT}
    assert empty == []
    stats = sim.stats()
    assert (stats["apns"]["accepted"], stats["fcm"]["accepted"]) == (3, 3)


def test_empty_batch_starts_nothing():
    assert runtime.send_batch(object(), []) == []  # type: ignore[arg-type]
    assert runtime._runtime is None


def test_run_sync_refuses_to_deadlock_its_own_loop():
    async def nested() -> None:
        runtime.run_sync(lambda: asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="delivery loop thread"):
        runtime.run_sync(nested)


def _send_in_child(config, queue) -> None:  # runs in a forked child
    results = runtime.send_batch(config, apns_pushes(1000, 5))
    queue.put([r.outcome.value for r in results])


def test_a_forked_child_gets_its_own_loop_and_connection(sim, apns_config):
    runtime.send_batch(apns_config, apns_pushes(0, 5))  # parent has a live runtime
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    child = context.Process(target=_send_in_child, args=(apns_config, queue))
    child.start()
    outcomes = queue.get(timeout=20)
    child.join(timeout=20)

    assert outcomes == ["sent"] * 5
    assert child.exitcode == 0
    assert sim.stats()["apns"]["connections"] == 2  # parent's and child's
    parent_again = runtime.send_batch(apns_config, apns_pushes(10, 1))
    assert parent_again[0].outcome is Outcome.SENT
