"""CSV rows -> COPY text for the loader's staging table, normalised in this process or, for big files,
in a pool of parser processes (forkserver) with a bounded number of chunks in flight, in file order.

The parser processes import this module only: it keeps psycopg and SQLAlchemy out of them.
"""

from __future__ import annotations

import multiprocessing
import sys
import types
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool
from typing import Any

import orjson

from campaigns.numbers import NumberPolicy, RowLayout, normalise_row

CHUNK_ROWS = 5000
PARALLEL_AFTER_ROWS = 20_000
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


def format_copy_chunk(rows: list[tuple[int, list[str]]], layout: RowLayout,
                      policy: NumberPolicy) -> tuple[str, int]:
    """Normalise rows and render them as COPY text for load_staging; returns (text, rejected count)."""
    out: list[str] = []
    rejected = 0
    dumps = orjson.dumps
    for line_no, fields in rows:
        row = normalise_row(line_no, fields, layout, policy)
        raw = _copy_text(row.raw_value)
        if row.reason is None:
            # orjson escapes control characters itself; only backslashes need doubling for COPY text.
            variables = dumps(row.variables).decode().replace("\\", "\\\\")
            number = _copy_text(row.number or "")
            out.append(f"{line_no}\t{raw}\t{number}\t{variables}\t{row.timezone}\t\\N\t\\N\n")
        else:
            rejected += 1
            detail = "\\N" if row.detail is None else _copy_text(row.detail)
            out.append(f"{line_no}\t{raw}\t\\N\t\\N\t\\N\t{row.reason.value}\t{detail}\n")
    return "".join(out), rejected


_worker_state: tuple[RowLayout, NumberPolicy] | None = None


def _init_worker(layout: RowLayout, policy: NumberPolicy) -> None:
    global _worker_state
    _worker_state = (layout, policy)


def _format_in_worker(rows: list[tuple[int, list[str]]]) -> tuple[str, int]:
    assert _worker_state is not None
    return format_copy_chunk(rows, *_worker_state)


def _chunks(rows: Iterable[tuple[int, list[str]]], size: int) -> Iterator[list[tuple[int, list[str]]]]:
    chunk: list[tuple[int, list[str]]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def _bare_main_module() -> Iterator[None]:
    """While starting processes, hide the caller's __main__: multiprocessing re-imports it in every child
    (the CLI, uvicorn or a script: ~50 MB of imports each, and whatever a script does at import)."""
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _start_pool(workers: int, layout: RowLayout, policy: NumberPolicy) -> Pool:
    # forkserver, not fork: the caller may be a threaded server, and fork copies locks other threads hold.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["campaigns.copy_chunks"])
    with _bare_main_module():
        return context.Pool(workers, initializer=_init_worker, initargs=(layout, policy))


def normalised_chunks(rows: Iterable[tuple[int, list[str]]], layout: RowLayout, policy: NumberPolicy,
                      workers: int) -> Iterator[tuple[str, int, int]]:
    """(COPY text, rows, rejected) per chunk, in file order; a process pool past PARALLEL_AFTER_ROWS."""
    seen = 0
    pool = None
    inflight: deque[tuple[Any, int]] = deque()
    try:
        for chunk in _chunks(rows, CHUNK_ROWS):
            if pool is None and (workers <= 1 or seen < PARALLEL_AFTER_ROWS):
                text, rejected = format_copy_chunk(chunk, layout, policy)
                seen += len(chunk)
                yield text, len(chunk), rejected
                continue
            if pool is None:
                pool = _start_pool(workers, layout, policy)
            inflight.append((pool.apply_async(_format_in_worker, (chunk,)), len(chunk)))
            seen += len(chunk)
            if len(inflight) >= 2 * workers + 1:  # bounded: memory does not grow with the file
                result, n = inflight.popleft()
                text, rejected = result.get()
                yield text, n, rejected
        while inflight:
            result, n = inflight.popleft()
            text, rejected = result.get()
            yield text, n, rejected
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
