"""What the server asks of the C library's allocator so that memory it frees goes back to the system.

glibc keeps the pages it frees for reuse. Two settings decide whether a reload's or a scrape's
memory returns (bench/NOTES.md, "Reload memory"):

- **Large blocks always mapped on their own.** glibc serves a block of 128 KiB or more with its own
  ``mmap`` and gives it back on ``free``, but by default raises that threshold to the size of every
  such block freed (up to 32 MiB): after the first reload, the next map's buffers came from a heap
  and stayed there, about 7 MiB above the figure before. :func:`map_large_blocks` fixes the
  threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the raising off).
- **Free pages inside the heaps** are returned only at the top of a heap, or when asked:
  :func:`release_freed_memory` (``malloc_trim(0)``) after a reload and after a ``GET /routes``.

Both are no-ops where the C library is not glibc (musl, macOS): the server runs, and keeps more.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import cast

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BLOCK = 128 * 1024  # glibc's own default threshold, kept fixed


def _libc(name: str, *argtypes: type) -> Callable[..., int] | None:
    """A glibc function by name, or None where the C library has none (musl, macOS)."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return cast("Callable[..., int]", function)


_MALLOC_TRIM = _libc("malloc_trim", ctypes.c_size_t)
_MALLOPT = _libc("mallopt", ctypes.c_int, ctypes.c_int)


def release_freed_memory() -> bool:
    """Hand the C heaps' free pages back to the system (glibc ``malloc_trim(0)``); False without glibc.

    Call it once a replaced map is gone: glibc returns the free pages inside its heaps only when
    asked, so without it the server's RSS kept the high-water mark of every reload.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Serve every block of ``threshold`` bytes or more with its own mapping, returned on free, for
    the rest of the process (glibc ``mallopt``); False without glibc or if glibc refuses."""
    if _MALLOPT is None:
        return False
    return _MALLOPT(M_MMAP_THRESHOLD, threshold) == 1
