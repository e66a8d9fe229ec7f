"""Threads for the work around the network: decoding, PNG encoding, base64, file I/O.

Pillow and zlib release the GIL while they decode and encode, and file I/O releases it too, so
threads scale with cores without the copies and start-up cost of processes (measured on 2 cores:
Pillow's PNG encoder, 1.97x faster in two threads).
"""

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def num_workers(workers: int = 0) -> int:
    """`workers` threads, or with 0 one per core this process may run on."""
    if workers < 0:
        raise ValueError(f"workers must be 0 (all cores) or positive, got {workers}")
    return workers or len(os.sched_getaffinity(0))


def ordered_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """`fn(item)` for each item, in order, run in `pool` at most `ahead` items ahead of the consumer.

    Unlike `pool.map`, which submits every item at once, memory stays bounded by `ahead` results,
    and `items` may be a generator that is itself fed by the same pool. Work not yet started is
    cancelled when the consumer stops early (an error, a closed generator).
    """
    pending = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
