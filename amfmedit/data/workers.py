"""Worker processes for the image-heavy loops (rendering synthetic slices, converting images).

``ordered_map`` runs a top-level function over jobs on a process pool and yields results in
job order, keeping at most a few jobs in flight so that results never pile up in memory
(a stack of 512 x 512 slices is gigabytes). Processes start with the ``forkserver`` method:
safe whatever threads this process has, but a script that calls this must do so under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable, Iterable, Iterator


def default_workers(n_items: int, threshold: int) -> int:
    """One worker per CPU when there are at least ``threshold`` items, else run in-process."""
    return (os.cpu_count() or 1) if n_items >= threshold else 1


def ordered_map(fn: Callable, jobs: Iterable, *, workers: int, in_flight: int | None = None) -> Iterator:
    """``map(fn, jobs)`` on ``workers`` processes, in order, at most ``in_flight`` jobs ahead."""
    if workers <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    limit = in_flight or 2 * workers
    pending: deque = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("forkserver")) as pool:
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
