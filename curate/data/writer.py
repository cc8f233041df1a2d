"""Writing one .beton: ffcv's DatasetWriter with a page size fitted to the data, and a parent that
notices when a writer process dies (a full disk, an unreadable image) instead of waiting forever.

ffcv writes whole pages (8 MiB by default) and aligns the first one to a page boundary, so a split of
a few hundred kilobytes became tens of megabytes on disk. Array datasets get pages just large enough
for a few pages per writer process; JPEG datasets, whose sample sizes are not known beforehand, keep
ffcv's default.
"""

from __future__ import annotations

import errno
import queue
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from curate.errors import CurateError
from curate.workspace import no_space_message

SMALLEST_PAGE = 1 << 16  # 64 KiB: one page holds at least one sample, rounded up to a power of 2
DEFAULT_PAGE = 1 << 23  # 8 MiB, ffcv's default


def page_size(sample_bytes: int | None, n: int, workers: int) -> int:
    """Bytes per page: about eight pages per writer process, within [sample, 8 MiB].

    `sample_bytes` is the stored size of one sample (None when unknown, e.g. JPEG: ffcv's default).
    """
    if sample_bytes is None:
        return DEFAULT_PAGE
    smallest = max(SMALLEST_PAGE, 1 << int(np.ceil(np.log2(max(sample_bytes + 64, 1)))))
    want = sample_bytes * max(n, 1) // (8 * max(workers, 1))
    fitted = 1 << int(np.ceil(np.log2(max(want, 1))))
    return int(min(max(fitted, smallest), max(DEFAULT_PAGE, smallest)))


def _guarded(errors, work_fn: Callable, *args) -> None:
    """Run an ffcv writer job; report its exception to the parent before the process dies."""
    try:
        work_fn(*args)
    except BaseException as e:  # noqa: BLE001 - reported whole to the parent, which explains it
        errors.put((getattr(e, "errno", None), f"{type(e).__name__}: {e}"))
        errors.close()
        errors.join_thread()
        raise SystemExit(1) from None  # no traceback of its own: the parent prints one message


def write_beton(path: Path, fields: dict, source, workers: int, page: int) -> None:
    """Write `source` (indexable: sample i -> tuple in `fields` order) to `path`.

    Raises CurateError naming the disk when it fills up, and the cause when a writer process
    fails; the writer processes are stopped either way.
    """
    from ffcv.writer import DatasetWriter

    class _Writer(DatasetWriter):
        def _write_common(self, num_samples, queue_content, work_fn, extra_worker_args):
            _write_watched(self, num_samples, queue_content, work_fn, extra_worker_args)

    writer = _Writer(str(path), fields, num_workers=max(1, min(workers, len(source) // 64 or 1)))
    writer.page_size = page  # ffcv's constructor refuses pages under 2 MiB; its readers do not
    writer.from_indexed_dataset(source, chunksize=256)


def _write_watched(writer, num_samples, queue_content, work_fn, extra_worker_args) -> None:
    """ffcv's DatasetWriter._write_common, with a parent that watches its workers."""
    import ctypes
    from multiprocessing import Process, Queue, Value

    from ffcv.memory_allocator import MemoryAllocator

    writer.num_samples = num_samples
    writer.prepare()
    work: Queue = Queue()
    for todo in queue_content:
        work.put(todo)
    for _ in range(writer.num_workers):
        work.put(None)
    allocations: Queue = Queue()
    errors: Queue = Queue()
    done = Value(ctypes.c_uint64, 0)
    allocator = MemoryAllocator(writer.fname, writer.data_region_start, writer.page_size)
    args = (work, writer.metadata_sm, writer.metadata_type, writer.fields, allocator, done)
    args += (allocations, *extra_worker_args)
    procs = [
        Process(target=_guarded, args=(errors, work_fn, *args)) for _ in range(writer.num_workers)
    ]
    try:
        for p in procs:
            p.start()
        collected: list = []
        with tqdm(total=num_samples, desc=Path(writer.fname).name, unit="img", leave=False) as bar:
            while len(collected) < len(procs):
                _raise_if_failed(procs, errors, Path(writer.fname))
                try:
                    collected.append(allocations.get(timeout=0.1))
                except queue.Empty:
                    pass
                bar.update(done.value - bar.n)
        for p in procs:
            p.join()
        writer.finalize([a for part in collected for a in part])
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        for q in (work, allocations, errors):
            q.cancel_join_thread()  # chunks nobody will read must not hold this process at exit
        writer.metadata_sm.close()
        writer.metadata_sm.unlink()


def _raise_if_failed(procs, errors, path: Path) -> None:
    dead = [p for p in procs if p.exitcode not in (None, 0)]
    if not dead:
        return
    time.sleep(0.2)  # let the failing worker's report arrive
    try:
        code, what = errors.get_nowait()
    except queue.Empty:
        code, what = None, f"a writer process ended with exit code {dead[0].exitcode}"
    if code == errno.ENOSPC:
        raise CurateError(no_space_message(path))
    raise CurateError(f"writing {path.name} failed: {what}")
