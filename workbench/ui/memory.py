"""Keeping a long-running server's memory flat under glibc's allocator.

Gradio runs handlers on many worker threads, and glibc gives threads malloc arenas of their own whose freed memory
it keeps: `bench/load.py` measured the server at 1.5 -> 3.1 GB over 50 raters' turns. Two arenas, and handing
freed memory back after each turn, keep it flat. Elsewhere (another C library) both are no-ops.
"""

from __future__ import annotations

import ctypes
import functools

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter for the number of malloc arenas (malloc.h)."""


@functools.cache
def _glibc():
    """The C library, looked up once (a turn's trim runs on the hot path of every ask); None where it is not glibc."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def bound_malloc_arenas(arenas: int = 2) -> None:
    libc = _glibc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, arenas)


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (a few milliseconds; after a turn, not during one)."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
