"""``sso-proxy routes report``: the rollout per connection, from every replica's ``GET /routes``.

:func:`classify` is its pure core: done, still on Auth0, never seen. Every replica counts since its
process started (:class:`proxy.progress.Progress`); the report merges them.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from proxy.progress import UNKNOWN

DONE = "done"


ON_AUTH0 = "still on Auth0"


NEVER = "never seen"


WAITING = "workos, no WorkOS callback yet"


SHADOW = "shadow, on Auth0, counting"


@dataclass(frozen=True, slots=True)
class Row:
    """One connection in ``routes report``."""

    connection: str
    state: str | None
    status: str
    last_callback: float | None
    workos: int
    auth0: int
    fallbacks: int
    reachability: str | None = None
    shadow: int = 0  # in state shadow: callbacks that would have gone to WorkOS


@dataclass(slots=True)
class _Merged:
    state: str | None = None
    last: float | None = None
    decisions: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    reachability: set[str] = field(default_factory=set)
    shadow: int = 0


def merge_snapshots(snapshots: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, _Merged]:
    """Several replicas' ``connections_progress`` into one: counts summed, the latest last callback."""
    merged: dict[str, _Merged] = {}
    for snapshot in snapshots:
        for name, entry in snapshot.items():
            m = merged.setdefault(str(name), _Merged())
            state = entry.get("state")
            m.state = state if isinstance(state, str) else m.state
            last = entry.get("last_callback_unix")
            if isinstance(last, (int, float)) and (m.last is None or last > m.last):
                m.last = float(last)
            callbacks = entry.get("callbacks")
            for decision, count in callbacks.items() if isinstance(callbacks, Mapping) else ():
                if isinstance(count, int):
                    m.decisions[str(decision)] = m.decisions.get(str(decision), 0) + count
            fallbacks = entry.get("fallbacks")
            m.fallbacks += fallbacks if isinstance(fallbacks, int) else 0
            shadow = entry.get("shadow")
            m.shadow += shadow if isinstance(shadow, int) and not isinstance(shadow, bool) else 0
            reach = entry.get("reachability")
            if isinstance(reach, str):
                m.reachability.add(reach)
    return merged


def classify(name: str, m: _Merged) -> Row:
    """Where one connection stands: still on Auth0 (any Auth0 callback: legacy or fallbacks), done
    (workos and only WorkOS callbacks), waiting (workos, not seen yet), in shadow (on Auth0 on purpose,
    counting what would go to WorkOS) or never seen (legacy, no traffic)."""
    workos, auth0 = m.decisions.get("workos", 0), m.decisions.get("auth0", 0)
    if m.state == "shadow":
        status = SHADOW
    elif auth0 or m.fallbacks:
        status = ON_AUTH0
    elif m.state == "workos" and workos:
        status = DONE
    elif m.state == "workos":
        status = WAITING
    elif workos:
        status = ON_AUTH0 if m.state == "legacy" else DONE
    else:
        status = NEVER
    reach = "confirmed" if "confirmed" in m.reachability else next(iter(m.reachability), None)
    return Row(name, m.state, status, m.last, workos, auth0, m.fallbacks, reach, m.shadow)


def report_rows(snapshots: Iterable[Mapping[str, Mapping[str, Any]]]) -> list[Row]:
    order = {ON_AUTH0: 0, WAITING: 1, SHADOW: 2, NEVER: 3, DONE: 4}
    rows = [classify(name, m) for name, m in merge_snapshots(snapshots).items()]
    return sorted(rows, key=lambda r: (order.get(r.status, 9), r.connection))


def _age(last: float | None, now: float) -> str:
    if last is None:
        return "-"
    seconds = max(0, int(now - last))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def render_report(rows: list[Row], now: float, since: str | None = None) -> str:
    """A plain table plus a one-line tally: what is done, what still sees Auth0, what was never seen."""
    header = (
        "connection",
        "state",
        "status",
        "last callback",
        "workos",
        "auth0",
        "fallbacks",
        "shadow",
        "reachability",
    )
    table = [header] + [
        (
            r.connection,
            r.state or "-",
            r.status,
            _age(r.last_callback, now),
            str(r.workos),
            str(r.auth0),
            str(r.fallbacks),
            str(r.shadow) if r.state == "shadow" or r.shadow else "-",
            r.reachability or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    tally: dict[str, int] = {}
    for r in rows:
        if r.connection != UNKNOWN:
            tally[r.status] = tally.get(r.status, 0) + 1
    unconfirmed = sorted(r.connection for r in rows if r.reachability == "unconfirmed")
    lines.append("")
    lines.append(", ".join(f"{status}: {tally.get(status, 0)}" for status in (DONE, ON_AUTH0, WAITING, SHADOW, NEVER)))
    shadowed = [r for r in rows if r.state == "shadow"]
    if shadowed:
        lines.append(
            "in shadow (callbacks go to Auth0; 'shadow' counts those that would have gone to WorkOS): "
            + ", ".join(f"{r.connection} {r.shadow}" for r in shadowed)
        )
    if unconfirmed:
        lines.append(
            f"reachability unconfirmed (never seen through the proxy; their IdP may post to Auth0 directly): "
            f"{', '.join(unconfirmed)}"
        )
    if since:
        lines.append(f"counted since {since} (process start; restarts reset the counts)")
    return "\n".join(lines) + "\n"


MAX_ROUTES_BYTES = 16 * 1024 * 1024

Resolver = Callable[[str, int], list[str]]


def resolve_all(host: str, port: int) -> list[str]:
    """Every A and AAAA address of ``host`` (a headless Service's name lists one per ready pod)."""

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def replica_urls(admins: Iterable[str], resolve: Resolver = resolve_all) -> list[str]:
    """The operations listeners to ask, each once: a name is resolved to all its addresses (one URL
    each), so a headless Service's DNS name finds every replica; the same replica named twice (or by
    name and by address) is asked once, so no count is doubled. ``localhost`` is kept as it is: it
    names this host's loopback twice (127.0.0.1, ::1) and the listener may be on only one."""

    out: dict[str, None] = {}
    for admin in admins:
        parts = urlsplit(admin.rstrip("/"))
        host, scheme = parts.hostname or "", parts.scheme
        if scheme not in ("http", "https") or not host:
            raise ValueError(f"{admin}: give the operations listener's URL, e.g. http://127.0.0.1:9090")
        port = parts.port or (443 if scheme == "https" else 80)
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            if host == "localhost" or scheme == "https":  # https: certificates name the host, not the address
                out[f"{scheme}://{parts.netloc}"] = None
                continue
            try:
                addresses = resolve(host, port)
            except OSError as exc:
                raise ValueError(f"{admin}: cannot resolve {host}: {exc}") from exc
        for address in addresses:
            shown = f"[{address}]" if ":" in address else address
            out[f"{scheme}://{shown}:{port}"] = None
    return list(out)


def read_json(
    target: str | urllib.request.Request,
    label: str,
    limit: int,
    timeout: float,
    *,
    http_detail: Callable[[urllib.error.HTTPError], str] = lambda _exc: "",
    too_large: str = "",
    not_json: str = "",
) -> Any:
    """The JSON answer of an HTTP request (``target``'s scheme checked by the caller), read to at
    most ``limit`` bytes. ValueError with a one-line reason starting with ``label``; ``http_detail``,
    ``too_large`` and ``not_json`` add to the reason for an HTTP error, a larger answer, not JSON."""
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 - scheme checked by caller
            data = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{label}: HTTP {exc.code}{http_detail(exc)}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ValueError(f"{label}: cannot connect: {getattr(exc, 'reason', exc)}") from exc
    if len(data) > limit:
        raise ValueError(f"{label}: answer larger than {limit} bytes{too_large}")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{label}: not JSON{not_json}") from exc


def fetch_routes(admin: str, timeout: float = 10.0) -> dict[str, Any]:
    """``GET <admin>/routes`` of a running proxy, as JSON. ValueError with a one-line reason."""

    url = admin.rstrip("/") + "/routes"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{admin}: give the operations listener's URL, e.g. http://127.0.0.1:9090")
    body = read_json(url, url, MAX_ROUTES_BYTES, timeout)
    if not isinstance(body, dict):
        raise ValueError(f"{url}: not a GET /routes answer")
    return body


def fetch_progress(admin: str, timeout: float = 10.0) -> tuple[dict[str, Any], str | None]:
    """``GET <admin>/routes`` of a running proxy: (its connections_progress, progress_since).

    Raises ValueError with a one-line reason when the answer cannot be used.
    """
    body = fetch_routes(admin, timeout)
    url = admin.rstrip("/") + "/routes"
    progress = body.get("connections_progress")
    if not isinstance(progress, dict):
        raise ValueError(f"{url}: no connections_progress (an sso-proxy older than this command?)")
    since = body.get("progress_since")
    return progress, since if isinstance(since, str) else None


def run_admin_report(admins: list[str], fmt: str) -> int:
    """``routes report --admin``: every replica's ``GET /routes`` asked once, merged, printed."""

    snapshots = []
    since: list[str] = []
    try:
        replicas = replica_urls(admins)
        for admin in replicas:
            progress, started = fetch_progress(admin)
            snapshots.append(progress)
            since.extend([started] if started else [])
    except ValueError as exc:
        print(f"sso-proxy routes report: {exc}", file=sys.stderr)
        return 1
    rows = report_rows(snapshots)
    if fmt == "json":
        connections = [
            {
                "connection": r.connection,
                "state": r.state,
                "since": None,
                "counted_from": max(since) if since else None,
                "callbacks": {"workos": r.workos, "auth0": r.auth0},
                "fallbacks": r.fallbacks,
                "verdict": r.status,
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps({"connections": connections, "replicas": replicas}, indent=2) + "\n")
        return 0
    sys.stdout.write(render_report(rows, time.time(), max(since) if since else None))
    sys.stdout.write(f"replicas asked: {len(replicas)} ({', '.join(replicas)})\n")
    return 0
