"""The bounded pipeline between an export's source and its writer, so that both cores work.

Three stages overlap: a reader thread pulls batches from the source (for Snowflake: download and
Arrow decode, the connector's work), a small pool encodes them when the format encodes each batch
on its own (CSV and JSON Lines: `FormatWriter.batch_encoder`), and the caller's thread writes the
results in their original order (Parquet's encoder, gzip, the checksums, and the upload pipe or
file). Arrow's compute kernels and its CSV and Parquet writers release the GIL, so the stages run
in parallel.

Memory is bounded: at most `depth` items are ahead of the writer (queued, being encoded, or
encoded and waiting), plus the one the reader is producing. Order and content never depend on
timing: the output is byte for byte what encoding the batches one by one would give.

Failure on any side stops the others: an error in the reader or in an encoder is raised to the
caller at the item where it happened, and when the caller stops early (its own error, or the run
being cancelled) the reader is told to stop and pending encodes are cancelled.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# How long the caller waits for the reader to notice a stop before it leaves it to finish on its
# own (it is then blocked in the source, which the caller is about to close).
_STOP_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.1


def default_workers() -> int:
    """Encoding threads: one per core this process may use, at most four."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class _End:
    pass


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class _Done(Generic[R]):
    """A finished result that is not worth a thread (no encoder): looks like a Future."""

    def __init__(self, value: R):
        self._value = value

    def result(self) -> R:
        return self._value

    def cancel(self) -> bool:
        return False


def ahead(
    items: Iterable[T],
    work: Callable[[T], R] | None = None,
    *,
    workers: int | None = None,
    depth: int | None = None,
) -> Iterator[tuple[T, R | None]]:
    """Yield `(item, work(item))` for each item in order, reading and working ahead of the caller.

    A thread iterates `items`; `work` (thread-safe) runs on `workers` threads. Without `work`, only
    the reading is done ahead and each result is None. At most `depth` items (default twice the
    workers) are ahead of the caller.
    """
    workers = workers or default_workers()
    depth = max(1, depth or 2 * workers)
    pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="export-encode") if work is not None else None
    source = iter(items)

    def put(entry: Any) -> bool:
        while not stop.is_set():
            try:
                pending.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in source:
                result: Future[R] | _Done[None] = pool.submit(work, item) if pool and work else _Done(None)
                if not put((item, result)):
                    result.cancel()
                    return
            put(_End())
        except BaseException as error:  # noqa: BLE001 - handed to the caller, who raises it
            put(_Failed(error))

    reader = threading.Thread(target=read, name="export-read", daemon=True)
    reader.start()
    try:
        while True:
            entry = pending.get()
            if isinstance(entry, _End):
                return
            if isinstance(entry, _Failed):
                raise entry.error
            item, result = entry
            yield item, result.result()
    finally:
        stop.set()
        while True:  # unblock the reader and drop what it queued
            try:
                entry = pending.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, tuple):
                entry[1].cancel()
        reader.join(_STOP_WAIT_SECONDS)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if not reader.is_alive():
            close = getattr(source, "close", None)
            if close is not None:  # a generator left suspended: run its cleanup now
                close()
