"""Builds a route map in a child process, so no request waits on a reload.

Parsing a 20,000-connection map in a worker thread still held the server's GIL for 0.5-1.1 s at a
time: libyaml composed the whole document in one C call, and its node tree (two marks per node)
peaked at 137 MB in the server's own heap, which never gave it back. Here the server hands the
bytes it read (and hashed) to ``python -m proxy.mapbuild`` on a pipe; the child parses and
validates them as they stream (:func:`proxy.routing.routemap.parse_routemap`), indexes them, and
writes back, each with a 4-byte length:

1. a pickle of ``("map", fields, ambiguous)``: the map's own fields but its connections and
   indexes, and the identifiers several connections claim; or ``("error", [located errors])``;
2. the :data:`~proxy.routing.packedmap.BUFFERS` buffers of the packed connections and indexes
   (:mod:`proxy.routing.packedmap`), raw.

The server reads the buffers into place: no Python object per connection is made, so the GIL is
held only for copies of a few MB, and the map replaced by a reload goes back to the system whole
(large buffers come from the C library, not from the small-object arenas that kept a replaced
map's pages). The child's memory is the child's: it exits when the map is built. The child runs
at a lower priority (nice 10): where the pod's CPU is short, requests go first.

The pickle comes from this module's own code in a child it started, over a pipe nobody else
holds; the route file's content is never unpickled, only YAML-parsed (safe loader) in the child.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import fields
from types import MappingProxyType
from typing import IO, Any

import proxy
from proxy.errors import RouteMapError
from proxy.routing.packedmap import BUFFERS, pack, packed, unpack
from proxy.routing.routemap import RouteMap, build_index, parse_routemap

# Below this size a map is parsed in the calling thread: a few milliseconds of Python that gives the
# GIL back every switch interval, where starting the child costs about 0.2 s (about 300 connections).
IN_PROCESS_BELOW = 64 * 1024
_LENGTH = struct.Struct(">I")
_OWN_FIELDS = frozenset(("connections", "index", "ambiguous"))
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(proxy.__file__)))


def _write(out: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)) + data)


def _read_buffer(stream: IO[bytes]) -> bytes:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the map builder's output ended early")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the map builder's output ended early")
    return data


def _read(stream: IO[bytes]) -> Any:
    return pickle.loads(_read_buffer(stream))  # noqa: S301 - our own child over our own pipe (module docstring)


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
    index, ambiguous = build_index(route_map.connections)
    own = {f.name: getattr(route_map, f.name) for f in fields(RouteMap) if f.name not in _OWN_FIELDS}
    _write(stdout, ("map", own, ambiguous))
    for buffer in pack(route_map.connections, index):
        stdout.write(_LENGTH.pack(len(buffer)))
        stdout.write(buffer)


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
        return packed(parse_routemap(data, source, workos_domain))
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
        kind, *body = _read(child.stdout)
        if kind == "error":
            raise RouteMapError(source, list(body[0]))
        own, ambiguous = body
        connections, index = unpack([_read_buffer(child.stdout) for _ in range(BUFFERS)])
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
    return RouteMap(
        connections=connections,
        index=MappingProxyType(index),
        ambiguous=MappingProxyType({kind: MappingProxyType(table) for kind, table in ambiguous.items()}),
        **own,
    )


if __name__ == "__main__":
    serve_child(sys.stdin.buffer, sys.stdout.buffer)
