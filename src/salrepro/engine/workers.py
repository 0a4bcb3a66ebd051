"""Independent batches trained side by side: one single-threaded worker process per thread.

A batch of small models (the Table 2/3 nets: MNIST-sized SAL and BP at batch 16)
is a chain of small calls: a matrix of 16-80 rows per area, an argmax, a sort,
a scatter. Split over two threads, each call pays the threads' hand-over and
gains little; two such batches, each on one core, do not share anything. Measured
on a 2-core Intel Xeon, 5 seeds of MNIST SAL-16 stacked, nothing else running:
a step takes 2.26 ms with two threads, 3.04 ms with one, and two one-thread
processes side by side take 3.15 and 3.43 ms each, 1.65 ms a step for the
machine (1.37x the two-thread rate); SAL-1: 0.71 ms against 0.95 / 0.91 side by
side, 0.47 ms for the machine (1.5x).

So `runs.run_all` trains the batches of small models in `workers`
processes (forked: they share the loaded data, copy-on-write), each with one
torch thread, and the wide and deep nets, whose steps are large matrix products
that two threads do share well, in the calling process with every thread.
A batch's numbers do not depend on where it trains, up to float rounding (one
thread sums in another order than two).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
from typing import Callable, Iterator

import torch

_TASK: tuple | None = None  # (function, progress queue), set before the pool forks: its workers inherit it


def available() -> bool:
    """Can workers be forked here (Linux; macOS and Windows spawn, which would reload everything)?"""
    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def default_workers(device: torch.device) -> int:
    """Workers for a CPU run: `SALREPRO_WORKERS` if set, else one per thread torch was given
    (`torch.get_num_threads()`, which OMP_NUM_THREADS sets: OMP_NUM_THREADS=1 trains in one process);
    1 on a GPU (one device, one stream of work) or where workers cannot be forked."""
    if device.type != "cpu" or not available():
        return 1
    env = os.environ.get("SALREPRO_WORKERS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"SALREPRO_WORKERS={env!r}: a whole number of worker processes (1: train in this process)") from None
        if n < 1:
            raise ValueError(f"SALREPRO_WORKERS={env!r}: at least 1 (1: train in this process)")
        return n
    return max(1, torch.get_num_threads())


def resolve(workers: int | None, device: torch.device) -> int:
    """The workers a run gets: `default_workers` for None, else the number given (checked), and 1 on a
    GPU or where workers cannot be forked."""
    if workers is None:
        return default_workers(device)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers: a whole number >= 1 (1: train in this process), got {workers!r}")
    return workers if device.type == "cpu" and available() else 1


def _start() -> None:
    torch.set_num_threads(1)


def _call(index: int):
    fn, messages = _TASK
    try:
        return fn(index, messages.put)
    finally:
        messages.put(("done", index))  # wakes the caller at once, result or exception


def run(fn: Callable, tasks: list[int], workers: int, on_progress: Callable[[int], None]) -> Iterator[tuple[int, object]]:
    """Yield (task, fn(task, progress)) for every task, as each finishes, computed in `workers` forked
    one-thread processes, in the order given (put the longest first). `progress(n)` in a worker calls
    `on_progress(n)` here. A worker's exception is raised here; leaving the loop early (an exception,
    Ctrl-C) terminates the workers."""
    global _TASK
    ctx = mp.get_context("fork")
    messages = ctx.Queue()  # progress counts, and ("done", task) when a task ends
    _TASK = (fn, messages)
    try:
        with ctx.Pool(min(workers, len(tasks)), initializer=_start) as workers_pool:
            pending = {i: workers_pool.apply_async(_call, (i,)) for i in tasks}
            while pending:
                try:
                    message = messages.get(timeout=1.0)
                except queue.Empty:  # no word for a second: look at the results themselves
                    message = None
                if isinstance(message, int):
                    on_progress(message)
                # a task ends with its "done", which follows its progress (one worker's messages keep their
                # order); its result may come first, through the pool's own pipe
                for i in [i for i, r in pending.items() if message == ("done", i) or (message is None and r.ready())]:
                    result = pending.pop(i).get()  # a worker's exception is raised here
                    yield i, result
    finally:
        _TASK = None
