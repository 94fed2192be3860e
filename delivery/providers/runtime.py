"""Run the async senders from synchronous code (Celery tasks, management commands).

One event loop per process, on a daemon thread, created on first use. Senders are
cached per config on that loop, so HTTP/2 and keep-alive connections, TLS sessions,
the APNs JWT and the FCM OAuth token survive from one task to the next — the
alternative (``asyncio.run`` per task) would reconnect and re-authenticate every
time. After ``fork`` (Celery prefork pool) the parent's thread does not exist in the
child, so everything is keyed by ``os.getpid()`` and rebuilt lazily.

:class:`SendStream` is how the delivery engine sends: pushes start only as far as
the caller has admitted them (it records that first), and results come back while
the rest are still in flight, so a process killed mid-send leaves only the requests
truly in flight with an unknown outcome (docs/decisions.md, "Delivery engine").
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from delivery.providers.apns import ApnsSender
from delivery.providers.base import (
    ApnsConfig,
    FcmConfig,
    OutgoingPush,
    ProviderSender,
    PushResult,
    WebPushConfig,
)
from delivery.providers.fcm import FcmSender
from delivery.providers.webpush import WebPushSender

logger = logging.getLogger(__name__)

T = TypeVar("T")
SenderConfig = ApnsConfig | FcmConfig | WebPushConfig

# Configs differ per project; keep the most recently used ones, close the rest.
MAX_CACHED_SENDERS = 32
# A stream hands a sender its pushes in slices of a quarter of its concurrency (within
# these bounds): small enough that what waits behind the sender's semaphore stays
# small, big enough that a slice's call overhead is shared by many pushes.
MIN_SLICE = 8
MAX_SLICE = 128


class _Runtime:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._run, name=f"herald-delivery-loop-{self.pid}", daemon=True
        )
        self.senders: OrderedDict[SenderConfig, ProviderSender] = OrderedDict()
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


def _sender_for(runtime: _Runtime, config: SenderConfig) -> ProviderSender:
    """Loop-thread only: senders bind to the loop they first run on."""
    cached = runtime.senders.get(config)
    if cached is not None:
        runtime.senders.move_to_end(config)
        return cached
    sender: ProviderSender
    if isinstance(config, ApnsConfig):
        sender = ApnsSender(config)
    elif isinstance(config, FcmConfig):
        sender = FcmSender(config)
    else:
        sender = WebPushSender(config)
    runtime.senders[config] = sender
    while len(runtime.senders) > MAX_CACHED_SENDERS:
        _, evicted = runtime.senders.popitem(last=False)
        runtime.loop.create_task(evicted.close())
    return sender


def get_sender(config: SenderConfig) -> ProviderSender:
    """The process-wide sender for ``config`` (created on first use, never at import).

    Use it only through :func:`run_sync` / :func:`send_batch`: its connections live
    on the runtime's loop.
    """
    runtime = _current_runtime()

    async def lookup() -> ProviderSender:
        return _sender_for(runtime, config)

    return run_sync(lookup)


def send_batch(config: SenderConfig, pushes: Sequence[OutgoingPush]) -> list[PushResult]:
    """Synchronous convenience for Celery tasks: one result per push, same order."""
    return send_batches([(config, pushes)])[0]


def send_batches(
    jobs: Sequence[tuple[SenderConfig, Sequence[OutgoingPush]]],
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


def slice_size(config: SenderConfig) -> int:
    return slice_size_for(config.concurrency)


def slice_size_for(concurrency: int) -> int:
    return max(MIN_SLICE, min(MAX_SLICE, concurrency // 4))


class SendStream:
    """Send several configs' pushes on the runtime's loop; start a push only once the
    caller has admitted it, and hand results back while the rest are in flight.

    Each job's pushes start in order, a slice at a time, with at most about
    ``concurrency`` + one slice of them started and unanswered. A slice waits until
    the caller has admitted its last push; the loop asks for admission (`wanted`)
    a slice ahead so a prompt caller never holds the sender back.

    One caller thread uses `admit`, `wanted`, `wait`, `take` and `cancel`; the loop
    thread only appends results and raises wants, under a lock.
    """

    def __init__(
        self,
        jobs: Sequence[tuple[SenderConfig, Sequence[OutgoingPush]]],
        *,
        notify_rows: int,
    ) -> None:
        self.sizes = [len(pushes) for _, pushes in jobs]
        self._jobs = jobs
        self._notify_rows = max(1, notify_rows)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._results: list[tuple[int, int, PushResult]] = []
        self._wanted = [0] * len(jobs)  # loop: the admission each job would like
        self._admitted = [0] * len(jobs)  # set on the loop thread only
        self._events: list[asyncio.Event] = []
        self._cancelled = False
        self._runtime = _current_runtime()
        self._future = asyncio.run_coroutine_threadsafe(self._run(), self._runtime.loop)
        self._future.add_done_callback(lambda _: self._wake.set())

    # -- caller thread ---------------------------------------------------------

    def admit(self, limits: Sequence[int]) -> None:
        """Allow job k's pushes [0, limits[k]) to start (limits never go down)."""
        self._runtime.loop.call_soon_threadsafe(self._on_admit, list(limits))

    def wanted(self) -> list[int] | None:
        """The admissions the loop asked for since the last call, or None."""
        with self._lock:
            wanted = list(self._wanted)
            self._wanted = [0] * len(wanted)
        return wanted if any(wanted) else None

    def wait(self, timeout: float) -> None:
        """Until results pile up, the loop wants an admission, or the stream ends."""
        self._wake.wait(timeout)
        self._wake.clear()

    def take(self) -> list[tuple[int, int, PushResult]]:
        """(job, index, result) of the pushes answered since the last call."""
        with self._lock:
            results, self._results = self._results, []
        return results

    @property
    def done(self) -> bool:
        return self._future.done()

    def result(self) -> None:
        """Re-raise what ended the stream abnormally, if anything did."""
        self._future.result(0)

    def cancel(self) -> None:
        """Start nothing more; requests already started are abandoned."""
        self._cancelled = True
        self._future.cancel()

    # -- loop thread -----------------------------------------------------------

    def _on_admit(self, limits: list[int]) -> None:
        self._admitted = [max(a, b) for a, b in zip(self._admitted, limits, strict=True)]
        for event in self._events:
            event.set()

    def _want(self, job: int, upto: int) -> None:
        if self._admitted[job] >= upto:
            return
        with self._lock:
            self._wanted[job] = max(self._wanted[job], upto)
        self._wake.set()

    async def _run(self) -> None:
        self._events = [asyncio.Event() for _ in self._jobs]
        await asyncio.gather(*(self._send_job(job) for job in range(len(self._jobs))))

    async def _send_job(self, job: int) -> None:
        config, pushes = self._jobs[job]
        if not pushes:
            return
        sender = _sender_for(self._runtime, config)
        size = slice_size(config)
        gate = asyncio.Semaphore(math.ceil(config.concurrency / size) + 1)
        slices = [(start, min(start + size, len(pushes))) for start in range(0, len(pushes), size)]
        await asyncio.gather(
            *(self._send_slice(job, sender, pushes, start, end, gate) for start, end in slices)
        )

    async def _send_slice(
        self,
        job: int,
        sender: ProviderSender,
        pushes: Sequence[OutgoingPush],
        start: int,
        end: int,
        gate: asyncio.Semaphore,
    ) -> None:
        async with gate:  # FIFO: slices start in order
            event = self._events[job]
            while self._admitted[job] < end:
                if self._cancelled:
                    return
                self._want(job, end)
                event.clear()
                await event.wait()
            if self._cancelled:
                return
            self._want(job, min(len(pushes), end + (end - start)))  # the next slice
            results = await sender.send_many(pushes[start:end])
        with self._lock:
            self._results.extend((job, start + i, r) for i, r in enumerate(results))
            pending = len(self._results)
        if pending >= self._notify_rows:
            self._wake.set()
