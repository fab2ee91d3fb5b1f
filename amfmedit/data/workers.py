"""Worker processes for the image-heavy loops (rendering synthetic slices, converting images).

``ordered_map`` runs a top-level function over jobs on a process pool and yields results in
job order, keeping at most a few jobs in flight so that results never pile up in memory
(a stack of 512 x 512 slices is gigabytes). Processes start with the ``forkserver`` method:
safe whatever threads this process has, but a script that calls this must do so under
``if __name__ == "__main__":``.

Workers die with the process that started them: each runs a watchdog thread that ends the
worker (``os._exit``) as soon as that process is gone, ``kill -9`` included. (A worker's own
parent is the forkserver, not the caller, so ``PR_SET_PDEATHSIG`` would watch the wrong
process; the caller's pid is passed to the workers instead.)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator

from amfmedit.io import pid_alive

#: how often a worker checks that the process that started it is still there (seconds)
WATCH_INTERVAL_S = 0.2


def _watch_owner(owner: int) -> None:
    """Worker initializer: a daemon thread that ends this worker once ``owner`` has died."""
    def watch() -> None:
        while pid_alive(owner):
            time.sleep(WATCH_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name=f"watch-owner-{owner}", daemon=True).start()


def default_workers(n_items: int, threshold: int) -> int:
    """One worker per CPU when there are at least ``threshold`` items, else run in-process."""
    return (os.cpu_count() or 1) if n_items >= threshold else 1


def ordered_map(fn: Callable, jobs: Iterable, *, workers: int, in_flight: int | None = None) -> Iterator:
    """``map(fn, jobs)`` on ``workers`` processes, in order, at most ``in_flight`` jobs ahead."""
    if workers <= 1:
        yield from map(fn, jobs)
        return

    limit = in_flight or 2 * workers
    pending: deque = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("forkserver"),
                             initializer=_watch_owner, initargs=(os.getpid(),)) as pool:
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
