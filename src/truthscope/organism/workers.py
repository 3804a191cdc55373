"""Independent jobs of the organism (models to train, fine-tune or evaluate) run side by side: on a
small machine, several tiny models of one thread each use the cores better than threads inside one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int = 1) -> Iterator[tuple[tuple, Any]]:
    """Yield (args, fn(*args)) for each job: in order in this process when `workers` <= 1, else as
    they finish in `workers` spawned processes of one thread each. A job's error is raised here."""
    if workers <= 1:
        for args in jobs:
            yield args, fn(*args)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        running = {pool.submit(fn, *args): args for args in jobs}
        for future in as_completed(running):
            yield running[future], future.result()
