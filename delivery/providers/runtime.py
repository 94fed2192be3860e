"""Run the async senders from synchronous code (Celery tasks, management commands).

One event loop per process, on a daemon thread, created on first use. Senders are
cached per config on that loop, so HTTP/2 and keep-alive connections, TLS sessions,
the APNs JWT and the FCM OAuth token survive from one task to the next — the
alternative (``asyncio.run`` per task) would reconnect and re-authenticate every
time. After ``fork`` (Celery prefork pool) the parent's thread does not exist in the
child, so everything is keyed by ``os.getpid()`` and rebuilt lazily.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from delivery.providers.apns import ApnsSender
from delivery.providers.base import ApnsConfig, FcmConfig, OutgoingPush, ProviderSender, PushResult
from delivery.providers.fcm import FcmSender

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Configs differ per project; keep the most recently used ones, close the rest.
MAX_CACHED_SENDERS = 32


class _Runtime:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._run, name=f"herald-delivery-loop-{self.pid}", daemon=True
        )
        self.senders: OrderedDict[ApnsConfig | FcmConfig, ProviderSender] = OrderedDict()
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()


_lock = threading.Lock()
_runtime: _Runtime | None = None


def _current_runtime() -> _Runtime:
    global _runtime
    runtime = _runtime
    if runtime is not None and runtime.pid == os.getpid() and runtime.thread.is_alive():
        return runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid() or not _runtime.thread.is_alive():
            # A runtime inherited through fork has no thread here; drop it without
            # touching its loop (its sockets belong to the parent).
            _runtime = _Runtime()
        return _runtime


def _reset_after_fork() -> None:
    global _lock, _runtime
    _lock = threading.Lock()  # a lock held by another thread at fork time stays held
    _runtime = None


os.register_at_fork(after_in_child=_reset_after_fork)


def run_sync(coro_factory: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
    """Run ``coro_factory()`` on the process's delivery loop and wait for its result.

    A factory rather than a coroutine so nothing is created (and left un-awaited)
    if the loop cannot take it. Must not be called from the loop thread itself.
    """
    runtime = _current_runtime()
    if threading.current_thread() is runtime.thread:
        raise RuntimeError("run_sync() called from the delivery loop thread")

    async def runner() -> T:
        return await coro_factory()

    future = asyncio.run_coroutine_threadsafe(runner(), runtime.loop)
    return future.result(timeout)


def _sender_for(runtime: _Runtime, config: ApnsConfig | FcmConfig) -> ProviderSender:
    """Loop-thread only: senders bind to the loop they first run on."""
    sender = runtime.senders.get(config)
    if sender is not None:
        runtime.senders.move_to_end(config)
        return sender
    sender = ApnsSender(config) if isinstance(config, ApnsConfig) else FcmSender(config)
    runtime.senders[config] = sender
    while len(runtime.senders) > MAX_CACHED_SENDERS:
        _, evicted = runtime.senders.popitem(last=False)
        runtime.loop.create_task(evicted.close())
    return sender


def get_sender(config: ApnsConfig | FcmConfig) -> ProviderSender:
    """The process-wide sender for ``config`` (created on first use, never at import).

    Use it only through :func:`run_sync` / :func:`send_batch`: its connections live
    on the runtime's loop.
    """
    runtime = _current_runtime()

    async def lookup() -> ProviderSender:
        return _sender_for(runtime, config)

    return run_sync(lookup)


def send_batch(config: ApnsConfig | FcmConfig, pushes: Sequence[OutgoingPush]) -> list[PushResult]:
    """Synchronous convenience for Celery tasks: one result per push, same order."""
    return send_batches([(config, pushes)])[0]


def send_batches(
    jobs: Sequence[tuple[ApnsConfig | FcmConfig, Sequence[OutgoingPush]]],
) -> list[list[PushResult]]:
    """`send_batch` for several configs at once (a sub-batch mixing APNs and FCM).

    The providers' requests are in flight together, so the call takes as long as the
    slowest provider's share rather than the sum of them.
    """
    if not any(pushes for _, pushes in jobs):
        return [[] for _ in jobs]
    runtime = _current_runtime()

    async def send() -> list[list[PushResult]]:
        return list(
            await asyncio.gather(
                *(_sender_for(runtime, config).send_many(pushes) for config, pushes in jobs)
            )
        )

    return run_sync(send)


def shutdown(timeout: float = 10.0) -> None:
    """Close every cached sender and stop the loop (tests, worker shutdown)."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is None or runtime.pid != os.getpid() or not runtime.thread.is_alive():
        return

    async def close_all() -> None:
        senders = list(runtime.senders.values())
        runtime.senders.clear()
        for sender in senders:
            await sender.close()

    try:
        asyncio.run_coroutine_threadsafe(close_all(), runtime.loop).result(timeout)
    finally:
        runtime.loop.call_soon_threadsafe(runtime.loop.stop)
        runtime.thread.join(timeout)
        if not runtime.thread.is_alive():
            runtime.loop.close()
