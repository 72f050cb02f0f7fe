"""The bridge's thread logic, driven by a small stand-in for the driver's ResponseFuture.

The stand-in answers from its own thread, as the driver's I/O thread does; everything
else about the bridge is proved against the real node in tests/core.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cassnb._core import bridge as _bridge
from cassnb._core.bridge import (
    DELIVERED_PER_TURN,
    InFlight,
    Page,
    PageFeed,
    fetch,
    post,
    reject,
    resolve,
    run_blocking,
    run_blocking_sync,
    run_shutdown,
)
from cassnb._driver.fast.reads import FastRead


class CancelledTimer:
    """What the driver leaves on a future once its request finished."""

    canceled = True

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback


class DriverThreadFuture:
    """Answers pages from another thread; keeps callbacks across pages like the driver."""

    def __init__(self, pages: list[list[Any]], *, fail_at: int | None = None) -> None:
        self._pages = pages
        self._fail_at = fail_at
        self._index = 0
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Any], None]] = []
        self._errbacks: list[Callable[[BaseException], None]] = []
        self._col_names = ["a"]
        self._col_types = [int]
        self._paging_state: bytes | None = None
        self._warnings: list[str] | None = None
        self.first_timer = CancelledTimer(self._on_timeout)
        self._timer: CancelledTimer | None = self.first_timer
        self._start_time = 0.0
        self.requests = 0
        self.threads: list[threading.Thread] = []
        self._send()

    def _send(self) -> None:
        self.requests += 1
        thread = threading.Thread(target=self._answer, args=(self._index,))
        self.threads.append(thread)
        thread.start()

    def _answer(self, index: int) -> None:
        time.sleep(0.01)
        if self._fail_at == index:
            with self._lock:
                errbacks = list(self._errbacks)
            for errback in errbacks:
                errback(RuntimeError(f"page {index} failed"))
            return
        more = index + 1 < len(self._pages)
        self._paging_state = f"after {index}".encode() if more else None
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(list(self._pages[index]))

    def _on_timeout(self) -> None:
        raise AssertionError("a cancelled timer is never called")

    @property
    def has_more_pages(self) -> bool:
        return self._paging_state is not None

    def add_callbacks(
        self, callback: Callable[[Any], None], errback: Callable[[BaseException], None]
    ) -> None:
        with self._lock:
            self._callbacks.append(callback)
            self._errbacks.append(errback)

    def clear_callbacks(self) -> None:
        with self._lock:
            self._callbacks = []
            self._errbacks = []

    def start_fetching_next_page(self) -> None:
        if self._paging_state is None:
            raise RuntimeError("no more pages")
        self._index += 1
        self._send()

    def join(self) -> None:
        for thread in list(self.threads):
            thread.join()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    loop = asyncio.get_running_loop()
    caught: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: caught.append(context))
    yield caught
    loop.set_exception_handler(None)


async def test_fetch_collects_every_page_on_the_driver_thread(
    loop_errors: list[dict[str, Any]],
) -> None:
    future = DriverThreadFuture([[1, 2], [3], [4, 5]])
    page = await fetch(FastRead(future), all_pages=True, in_flight=InFlight())
    assert page.rows == [1, 2, 3, 4, 5]
    assert page.paging_state is None
    assert page.column_names == ["a"]
    assert future.requests == 3
    assert future._timer is None
    assert future.first_timer.callback is None
    assert future._start_time > 0
    assert loop_errors == []


async def test_fetch_one_page_keeps_the_paging_state() -> None:
    future = DriverThreadFuture([[1, 2], [3]])
    page = await fetch(FastRead(future), all_pages=False, in_flight=InFlight())
    assert page.rows == [1, 2]
    assert page.paging_state == b"after 0"
    assert page.has_more
    assert future.requests == 1


async def test_fetch_raises_the_driver_error() -> None:
    future = DriverThreadFuture([[1], [2], [3]], fail_at=1)
    with pytest.raises(RuntimeError, match="page 1 failed"):
        await fetch(FastRead(future), all_pages=True, in_flight=InFlight())


async def test_an_error_inside_the_driver_callback_is_not_swallowed() -> None:
    class Exhausted(DriverThreadFuture):
        def start_fetching_next_page(self) -> None:
            raise RuntimeError("next page refused")

    with pytest.raises(RuntimeError, match="next page refused"):
        await fetch(FastRead(Exhausted([[1], [2]])), all_pages=True, in_flight=InFlight())


async def test_cancelling_stops_fetching_and_clears_callbacks(
    loop_errors: list[dict[str, Any]],
) -> None:
    future = DriverThreadFuture([[n] for n in range(100)])
    task = asyncio.create_task(fetch(FastRead(future), all_pages=True, in_flight=InFlight()))
    await asyncio.sleep(0.035)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert future._callbacks == []
    assert future._errbacks == []
    requested = future.requests
    await asyncio.sleep(0.1)
    future.join()
    assert future.requests <= requested + 1
    assert loop_errors == []


async def test_in_flight_requests_fail_at_once() -> None:
    in_flight = InFlight()
    future = DriverThreadFuture([[n] for n in range(1000)])
    task = asyncio.create_task(fetch(FastRead(future), all_pages=True, in_flight=in_flight))
    await asyncio.sleep(0.02)
    threading.Thread(target=in_flight.fail_all, args=(LookupError("closed"),)).start()
    with pytest.raises(LookupError, match="closed"):
        await asyncio.wait_for(task, 1)
    assert future._callbacks == []
    future.join()


async def test_resolving_a_finished_future_is_harmless(
    loop_errors: list[dict[str, Any]],
) -> None:
    loop = asyncio.get_running_loop()
    cancelled: asyncio.Future[int] = loop.create_future()
    cancelled.cancel()
    done: asyncio.Future[int] = loop.create_future()
    done.set_result(1)
    for target in (cancelled, done):
        thread = threading.Thread(target=resolve, args=(target, 2))
        thread.start()
        thread.join()
        thread = threading.Thread(target=reject, args=(target, ValueError()))
        thread.start()
        thread.join()
    await asyncio.sleep(0.01)
    assert done.result() == 1
    assert loop_errors == []


def test_posting_to_a_closed_loop_is_harmless() -> None:
    loop = asyncio.new_event_loop()
    future: asyncio.Future[int] = loop.create_future()
    loop.close()
    resolve(future, 1)
    reject(future, ValueError())


async def test_posts_arriving_together_wake_the_loop_once_and_keep_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    wakeups = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return call_soon_threadsafe(*args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    received: list[int] = []
    # The loop is busy (it runs this test) while another thread posts a burst.
    sender = threading.Thread(target=lambda: [post(loop, received.append, n) for n in range(500)])
    sender.start()
    sender.join()
    assert received == []
    turns = 0
    while len(received) < 500 and turns < 500:
        await asyncio.sleep(0)
        turns += 1
    assert received == list(range(500))
    assert wakeups == 1
    post(loop, received.append, 500)
    await asyncio.sleep(0)
    assert received[-1] == 500
    assert wakeups == 2


async def test_a_burst_is_handed_over_a_few_at_a_time_so_woken_tasks_run_between() -> None:
    loop = asyncio.get_running_loop()
    order: list[str] = []

    async def waiter(number: int, future: asyncio.Future[int]) -> None:
        await future
        order.append(f"task {number}")

    futures = [loop.create_future() for _ in range(4 * DELIVERED_PER_TURN)]
    tasks = [asyncio.create_task(waiter(n, future)) for n, future in enumerate(futures)]
    await asyncio.sleep(0)  # every task now waits on its future

    def answer() -> None:
        for number, future in enumerate(futures):
            post(loop, order.append, f"answer {number}")
            resolve(future, number)

    sender = threading.Thread(target=answer)
    sender.start()
    sender.join()
    await asyncio.gather(*tasks)
    answers = [entry for entry in order if entry.startswith("answer")]
    assert answers == [f"answer {n}" for n in range(len(futures))]
    assert sorted(entry for entry in order if entry.startswith("task")) == sorted(
        f"task {n}" for n in range(len(futures))
    )
    # The first task woken ran before the last answer was handed over.
    assert order.index("task 0") < order.index(f"answer {len(futures) - 1}")


async def test_a_failing_posted_callback_is_reported_and_the_rest_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    received: list[str] = []

    def fail() -> None:
        raise ValueError("posted callback failed")

    def send() -> None:
        post(loop, received.append, "before")
        post(loop, fail)
        post(loop, received.append, "after")

    try:
        sender = threading.Thread(target=send)
        sender.start()
        sender.join()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert received == ["before", "after"]
    assert [type(context["exception"]) for context in reported] == [ValueError]


def test_posting_never_keeps_a_loop_alive() -> None:
    loop = asyncio.new_event_loop()
    future: asyncio.Future[int] = loop.create_future()
    resolve(future, 1)
    loop.run_until_complete(future)
    collected = threading.Event()
    weakref.finalize(loop, collected.set)
    loop.close()
    del loop, future
    gc.collect()
    assert collected.is_set()


async def test_results_reach_loops_in_other_threads() -> None:
    results: dict[int, int] = {}

    def run(number: int) -> None:
        async def work() -> int:
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            threading.Thread(target=resolve, args=(future, number * 10)).start()
            return await future

        results[number] = asyncio.run(work())

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: 0, 1: 10, 2: 20, 3: 30}


async def test_run_blocking_leaves_the_loop_free() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    assert await run_blocking(lambda: time.sleep(0.1) or "slept") == "slept"
    await ticker
    assert ticks == 10
    with pytest.raises(ZeroDivisionError):
        await run_blocking(lambda: 1 / 0)


async def test_an_abandoned_blocking_result_is_handed_over() -> None:
    handed: list[str] = []
    started = threading.Event()

    def slow() -> str:
        started.set()
        time.sleep(0.05)
        return "session"

    task = asyncio.create_task(run_blocking(slow, on_abandon=handed.append))
    await asyncio.to_thread(started.wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    assert handed == ["session"]


def test_run_blocking_sync_waits_at_most_the_timeout() -> None:
    assert run_blocking_sync(lambda: None, timeout=1)
    started = time.perf_counter()
    assert not run_blocking_sync(lambda: time.sleep(0.5), timeout=0.05)
    assert time.perf_counter() - started < 0.3


class Receiver:
    def __init__(self) -> None:
        self.pages: list[Page] = []
        self.errors: list[BaseException] = []
        self.arrived = asyncio.Event()

    def on_page(self, page: Page) -> None:
        self.pages.append(page)
        self.arrived.set()

    def on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.arrived.set()


async def test_page_feed_hands_pages_to_the_loop_one_request_at_a_time() -> None:
    future = DriverThreadFuture([[1], [2], [3]])
    receiver = Receiver()
    feed = PageFeed(
        FastRead(future), asyncio.get_running_loop(), receiver.on_page, receiver.on_error
    )
    for expected in ([1], [2], [3]):
        await asyncio.wait_for(receiver.arrived.wait(), 1)
        receiver.arrived.clear()
        assert receiver.pages[-1].rows == expected
        if receiver.pages[-1].has_more:
            feed.request_next()
    assert future.requests == 3
    feed.detach()
    assert future._callbacks == []


class Arrivals(Receiver):
    """Also notes how many requests the future had been sent when each page came in."""

    def __init__(self, future: DriverThreadFuture) -> None:
        super().__init__()
        self.future = future
        self.sent_by_then: list[int] = []
        self.events: list[str] = []

    def on_page(self, page: Page) -> None:
        self.sent_by_then.append(self.future.requests)
        self.events.append(f"page {page.rows}")
        super().on_page(page)

    def on_error(self, exc: BaseException) -> None:
        self.events.append(f"error {exc}")
        super().on_error(exc)

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(2):
            while not done():
                await self.arrived.wait()
                self.arrived.clear()


async def test_a_feed_running_ahead_asks_for_each_page_itself_and_hands_them_over_together() -> (
    None
):
    future = DriverThreadFuture([[1], [2], [3], [4]])
    receiver = Arrivals(future)
    feed = PageFeed(
        FastRead(future), asyncio.get_running_loop(), receiver.on_page, receiver.on_error
    )
    feed.run_ahead()
    await receiver.until(lambda: len(receiver.pages) == 4)
    assert [page.rows for page in receiver.pages] == [[1], [2], [3], [4]]
    # The loop never asked: each page that has a next one says it is on its way.
    assert [page.next_requested for page in receiver.pages] == [True, True, True, False]
    assert future.requests == 4
    # Held until the last one, a few milliseconds later.
    assert receiver.sent_by_then == [4, 4, 4, 4]
    feed.detach()


async def test_a_feed_running_ahead_still_hands_pages_over_every_so_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_bridge, "_HELD_SECONDS", 0.0)
    future = DriverThreadFuture([[1], [2], [3]])
    receiver = Arrivals(future)
    feed = PageFeed(
        FastRead(future), asyncio.get_running_loop(), receiver.on_page, receiver.on_error
    )
    feed.run_ahead()
    await receiver.until(lambda: len(receiver.pages) == 3)
    assert [page.rows for page in receiver.pages] == [[1], [2], [3]]
    assert receiver.sent_by_then[0] < 3
    feed.detach()


async def test_a_feed_running_ahead_hands_over_its_pages_before_a_failure() -> None:
    future = DriverThreadFuture([[1], [2], [3], [4]], fail_at=2)
    receiver = Arrivals(future)
    feed = PageFeed(
        FastRead(future), asyncio.get_running_loop(), receiver.on_page, receiver.on_error
    )
    feed.run_ahead()
    await receiver.until(lambda: bool(receiver.errors))
    assert receiver.events == ["page [1]", "page [2]", "error page 2 failed"]
    feed.detach()


async def test_a_feed_that_cannot_run_ahead_leaves_the_request_to_the_loop() -> None:
    class Refusing(DriverThreadFuture):
        def start_fetching_next_page(self) -> None:
            raise RuntimeError("the session is shutting down")

    future = Refusing([[1], [2]])
    receiver = Arrivals(future)
    feed = PageFeed(
        FastRead(future), asyncio.get_running_loop(), receiver.on_page, receiver.on_error
    )
    feed.run_ahead()
    await receiver.until(lambda: bool(receiver.pages))
    page = receiver.pages[0]
    assert page.rows == [1] and page.has_more and not page.next_requested
    assert receiver.errors == []
    # The loop asks then, and meets the error itself.
    with pytest.raises(RuntimeError, match="shutting down"):
        feed.request_next()
    feed.detach()


async def test_a_feed_running_ahead_stops_asking_once_its_bound_waits_for_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_bridge, "AHEAD_PAGES", 3)
    future = DriverThreadFuture([[1], [2], [3], [4], [5], [6]])
    receiver = Arrivals(future)
    feed = PageFeed(
        FastRead(future), asyncio.get_running_loop(), receiver.on_page, receiver.on_error
    )
    feed.run_ahead()
    await receiver.until(lambda: len(receiver.pages) == 3)
    # The third page filled the bound: the driver's thread did not ask for the fourth.
    await asyncio.sleep(0.1)
    assert [page.rows for page in receiver.pages] == [[1], [2], [3]]
    assert [page.next_requested for page in receiver.pages] == [True, True, False]
    assert future.requests == 3 and not feed.has_room()
    # The consumer takes one: there is room for one more, which the loop asks for; the
    # driver's thread goes on asking while there is room.
    feed.consumed(receiver.pages[0].rows)
    assert feed.has_room()
    feed.request_next()
    await receiver.until(lambda: len(receiver.pages) == 4)
    await asyncio.sleep(0.1)
    assert future.requests == 4 and not receiver.pages[3].next_requested
    for page in receiver.pages[1:]:
        feed.consumed(page.rows)
    feed.request_next()
    await receiver.until(lambda: len(receiver.pages) == 6)
    assert [page.rows for page in receiver.pages] == [[1], [2], [3], [4], [5], [6]]
    assert future.requests == 6
    feed.detach()


def test_a_feed_whose_loop_closed_stops_its_read() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    future = DriverThreadFuture([[1], [2], [3]])
    receiver = Receiver()
    # The first page, handed over, finds nobody to take it.
    feed = PageFeed(FastRead(future), loop, receiver.on_page, receiver.on_error)
    future.join()
    assert feed.read is None
    assert future._callbacks == []
    assert future.requests == 1 and receiver.pages == []


async def test_page_feed_never_keeps_its_receiver_alive() -> None:
    future = DriverThreadFuture([[1], [2]])
    receiver = Receiver()
    feed = PageFeed(
        FastRead(future), asyncio.get_running_loop(), receiver.on_page, receiver.on_error
    )
    del receiver
    future.join()
    assert feed.read is None
    assert future._callbacks == []


async def test_a_slow_shutdown_is_waited_for_only_so_long() -> None:
    finished = threading.Event()

    def slow_shutdown() -> None:
        time.sleep(0.3)
        finished.set()

    started = time.perf_counter()
    await run_shutdown(slow_shutdown, wait=0.05)
    assert time.perf_counter() - started < 0.2
    assert not finished.is_set()
    await asyncio.to_thread(finished.wait, 2)
    assert finished.is_set()
    await run_shutdown(lambda: None, wait=1)
