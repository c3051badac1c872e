"""Builds a route map in a child process, so no request waits on a reload.

Parsing a 20,000-connection map in a worker thread still held the server's GIL for 0.5-1.1 s at a
time: libyaml composed the whole document in one C call, and its node tree (two marks per node)
peaked at 137 MB in the server's own heap, which never gave it back. Here the server hands the
bytes it read (and hashed) to ``python -m proxy.mapbuild`` on a pipe; the child parses and
validates them as they stream (:func:`proxy.routing.routemap.parse_routemap`, no lookup indexes)
and writes back length-prefixed pickles:

1. ``("map", fields)``: the map's own fields but its connections and indexes, or
   ``("error", [located errors])``;
2. lists of at most :data:`CHUNK` :class:`~proxy.routing.routemap.Connection` objects;
3. ``("end", count)``.

The server unpickles one chunk at a time (a fraction of a millisecond each, the only C call that
holds the GIL; the worker sleeps 0 s after each, so the loop takes the GIL at once) and builds the
indexes in Python (:func:`~proxy.routing.routemap.with_index`), which gives the GIL back every
switch interval. The child's memory is the child's: it exits when the map is built, so the
server's heap holds the map in force and the one being installed, nothing of the parse. The child
runs at a lower priority (nice 10): where the pod's CPU is short, requests go first.

The pickles come from this module's own code in a child it started, over a pipe nobody else holds;
the route file's content is never unpickled, only YAML-parsed (safe loader) in the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import pickle
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from types import MappingProxyType
from typing import IO, Any, cast

import proxy
from proxy.errors import RouteMapError
from proxy.routing.routemap import Connection, RouteMap, parse_routemap, with_index

CHUNK = 64  # connections per pickle: a quarter of a millisecond to load, a collection's worth at most
# Below this size a map is parsed in the calling thread: a few milliseconds of Python that gives the
# GIL back every switch interval, where starting the child costs about 0.2 s (about 300 connections).
IN_PROCESS_BELOW = 64 * 1024
_LENGTH = struct.Struct(">I")
_OWN_FIELDS = frozenset(("connections", "index", "ambiguous"))
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(proxy.__file__)))


def _write(out: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)) + data)


def _read(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the map builder's output ended early")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the map builder's output ended early")
    return pickle.loads(data)  # noqa: S301 - our own child over our own pipe (module docstring)


def serve_child(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child's side: one request (a JSON line of source and WorkOS domain, then the bytes)."""
    gc.disable()  # a short-lived process building acyclic data: collections would only cost time
    # Background work: where the pod's CPU is short, the server's requests go first.
    with contextlib.suppress(OSError):
        os.nice(10)
    request = json.loads(stdin.readline())
    data = stdin.read()
    try:
        route_map = parse_routemap(data, request["source"], request["workos_domain"], indexed=False)
    except RouteMapError as exc:
        _write(stdout, ("error", list(exc.errors)))
        return
    own = {f.name: getattr(route_map, f.name) for f in fields(RouteMap) if f.name not in _OWN_FIELDS}
    _write(stdout, ("map", own))
    connections = list(route_map.connections.values())
    for at in range(0, len(connections), CHUNK):
        _write(stdout, connections[at : at + CHUNK])
    _write(stdout, ("end", len(connections)))


def _libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast("Callable[[int], int]", trim)


_MALLOC_TRIM = _libc_trim()


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim(0)``); False without glibc.

    Call it once a replaced map is gone: glibc returns the free pages inside its heaps only when
    asked, so without it the server's RSS kept the high-water mark of every reload.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def build_routemap(
    data: bytes,
    source: str,
    workos_domain: str | None,
    in_process_below: int = IN_PROCESS_BELOW,
    python: str | None = None,
) -> RouteMap:
    """Parse, validate and index ``data`` with the parse in a child process (blocking: call it from a
    worker thread). Raises :class:`RouteMapError` for an invalid map, or when the child fails.
    ``python``: the child's interpreter (default: this one)."""
    if len(data) < in_process_below:
        return parse_routemap(data, source, workos_domain)
    # The child needs the interpreter's environment, not the service's settings or secrets.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH0_", "WORKOS_", "SSO_PROXY_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    try:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [python or sys.executable, "-m", "proxy.mapbuild"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
    except OSError as exc:
        raise RouteMapError(source, [f"{source}: cannot start the map builder: {exc.strerror or exc}"]) from exc
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    try:
        child.stdin.write(json.dumps({"source": source, "workos_domain": workos_domain}).encode() + b"\n")
        child.stdin.write(data)
        child.stdin.close()
        kind, body = _read(child.stdout)
        if kind == "error":
            raise RouteMapError(source, list(body))
        connections: dict[str, Connection] = {}
        while True:
            chunk = _read(child.stdout)
            if isinstance(chunk, tuple):
                break
            for conn in chunk:
                connections[conn.name] = conn
            time.sleep(0)  # hand the GIL to the event loop between chunks, not only every switch interval
        if chunk != ("end", len(connections)):
            raise EOFError("the map builder's output does not add up")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        child.kill()
        child.wait()
        last = child.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
        why = f"exit status {child.returncode}" + (f": {last[0]}" if last else "")
        raise RouteMapError(source, [f"{source}: the map builder failed ({exc}; {why})"]) from exc
    finally:
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()
        child.wait()
    return with_index(RouteMap(connections=MappingProxyType(connections), **body))


if __name__ == "__main__":
    serve_child(sys.stdin.buffer, sys.stdout.buffer)
