"""The batcher: concurrent requests share a call, each gets its own result, one bad item fails only itself."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tessera.serve.batching import Batcher


def test_concurrent_items_share_calls_and_keep_their_results() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def double(items: list[int]) -> list[int]:
        gate.wait(5)  # the first call blocks until everything is queued, so the rest must batch
        sizes.append(len(items))
        return [2 * i for i in items]

    batcher = Batcher(double, max_batch=16, max_wait_ms=5)

    async def main() -> list[int]:
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(40)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*tasks)

    try:
        assert asyncio.run(main()) == [2 * i for i in range(40)]
    finally:
        batcher.close()
    assert sum(sizes) == 40 and max(sizes) == 16 and len(sizes) <= 4


def test_one_by_one_when_max_batch_is_one() -> None:
    sizes: list[int] = []
    batcher = Batcher(lambda items: sizes.append(len(items)) or items, max_batch=1, max_wait_ms=0)

    async def main() -> list[int]:
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    try:
        assert asyncio.run(main()) == list(range(10))
    finally:
        batcher.close()
    assert sizes == [1] * 10


def test_a_failing_item_fails_alone() -> None:
    def inverse(items: list[float]) -> list[float]:
        return [1 / x for x in items]  # one zero raises for the whole batch; the batcher retries item by item

    batcher = Batcher(inverse, max_batch=8, max_wait_ms=20)

    async def main():
        return await asyncio.gather(*(batcher.submit(x) for x in (1.0, 0.0, 4.0)), return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert results[0] == 1.0 and results[2] == 0.25 and isinstance(results[1], ZeroDivisionError)


def test_waits_at_most_max_wait_for_company() -> None:
    batcher = Batcher(lambda items: items, max_batch=32, max_wait_ms=20)

    async def main() -> float:
        start = time.perf_counter()
        await batcher.submit(1)
        return time.perf_counter() - start

    try:
        assert asyncio.run(main()) < 1.0
    finally:
        batcher.close()


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda items: items, max_batch=0)


def test_two_workers_split_the_waiting_work_evenly_and_run_side_by_side() -> None:
    sizes: list[int] = []
    running, most_running = [0], [0]
    lock = threading.Lock()

    def slow(items: list[int]) -> list[int]:
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
            sizes.append(len(items))
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return items

    batcher = Batcher(slow, max_batch=32, max_wait_ms=5, workers=2)

    async def main() -> list[int]:
        first = asyncio.ensure_future(batcher.submit(-1))  # occupies one worker while the rest queue up
        await asyncio.sleep(0.02)
        rest = await asyncio.gather(*(batcher.submit(i) for i in range(32)))
        return [await first, *rest]

    try:
        assert asyncio.run(main()) == [-1, *range(32)]
    finally:
        batcher.close()
    # the free worker takes an even share (17 of the 33 in sight), not all 32; the rest go to the other
    assert sum(sizes) == 33 and max(sizes) <= 17 and most_running[0] == 2, sizes


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda items: items, workers=0)
