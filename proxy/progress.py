"""Progress of the rollout in numbers: per connection, when it was last seen and what was decided.

:class:`Progress` is updated once per callback on the event loop (like the loop-only counters in
``metrics.py``, no lock) and read by the operations listener (``GET /routes``) and by ``/metrics``
as two gauges:

- ``sso_proxy_connection_last_callback_timestamp_seconds{connection}``: Unix time of the last
  callback identified as that connection (only connections seen since the process started);
- ``sso_proxy_connection_unconfirmed{connection}``: for connections the map marks
  ``reachability: unconfirmed`` (their recorded callback URLs are not on the custom domain), 1 until a
  callback of theirs is seen through this proxy, then 0: the first one confirms the IdP posts here.

:func:`classify` is the pure core of ``sso-proxy routes report``: done, still on Auth0, never seen.
Everything here counts since the process started; the report merges replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from proxy.routing.routemap import RouteMap

UNKNOWN = "_unknown"


class _Seen:
    __slots__ = ("decisions", "fallbacks", "first", "last")

    def __init__(self, now: float) -> None:
        self.first = now
        self.last = now
        self.decisions: dict[str, int] = {}
        self.fallbacks = 0


class Progress:
    """Per-connection last callback and counts by decision; a Prometheus collector too."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._seen: dict[str, _Seen] = {}
        self.route_map: RouteMap | None = None
        self.started_at = time.time()
        if registry is not None:
            registry.register(self)

    def use_map(self, route_map: RouteMap) -> None:
        """The map in force (for the unconfirmed gauge); called by the route store on every load."""
        self.route_map = route_map

    def record(self, connection: str | None, decision: str, reason: str, now: float | None = None) -> None:
        """One decided callback (``connection`` None: unidentified)."""
        name = connection or UNKNOWN
        at = time.time() if now is None else now
        seen = self._seen.get(name)
        if seen is None:
            seen = self._seen[name] = _Seen(at)
        seen.last = at
        seen.decisions[decision] = seen.decisions.get(decision, 0) + 1
        if reason == "fallback":
            seen.fallbacks += 1

    def seen(self, connection: str) -> bool:
        return connection in self._seen

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per connection of the map in force (and ``_unknown``): what ``GET /routes`` shows."""
        rm = self.route_map
        names = sorted(rm.connections) if rm is not None else []
        out: dict[str, dict[str, Any]] = {}
        for name in [*names, *sorted(n for n in self._seen if rm is None or n not in rm.connections)]:
            conn = rm.connections.get(name) if rm is not None else None
            seen = self._seen.get(name)
            entry: dict[str, Any] = {
                "state": conn.state if conn is not None else None,
                "last_callback": _iso(seen.last) if seen else None,
                "last_callback_unix": round(seen.last, 3) if seen else None,
                "callbacks": dict(sorted(seen.decisions.items())) if seen else {},
                "fallbacks": seen.fallbacks if seen else 0,
            }
            if conn is not None and conn.reachability:
                confirmed = conn.reachability == "confirmed" or seen is not None
                entry["reachability"] = "confirmed" if confirmed else "unconfirmed"
                entry["confirmed_by"] = (
                    "traffic" if seen is not None else "operator" if conn.reachability == "confirmed" else None
                )
            out[name] = entry
        return out

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            "sso_proxy_connection_last_callback_timestamp_seconds",
            "Unix time of the last callback identified as each connection (since the process started).",
            labels=["connection"],
        )
        for name, seen in self._seen.items():
            last.add_metric([name], seen.last)
        yield last
        unconfirmed = GaugeMetricFamily(
            "sso_proxy_connection_unconfirmed",
            "1 for a connection marked reachability: unconfirmed whose callbacks this process has not "
            "seen yet (its IdP may post to Auth0 directly); 0 once one is seen.",
            labels=["connection"],
        )
        if self.route_map is not None:
            for name, conn in self.route_map.connections.items():
                if conn.reachability == "unconfirmed":
                    unconfirmed.add_metric([name], 0.0 if name in self._seen else 1.0)
        yield unconfirmed


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


# --- the report ----------------------------------------------------------------------------------

DONE = "done"
ON_AUTH0 = "still on Auth0"
NEVER = "never seen"
WAITING = "workos, no WorkOS callback yet"


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


@dataclass(slots=True)
class _Merged:
    state: str | None = None
    last: float | None = None
    decisions: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    reachability: set[str] = field(default_factory=set)


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
            reach = entry.get("reachability")
            if isinstance(reach, str):
                m.reachability.add(reach)
    return merged


def classify(name: str, m: _Merged) -> Row:
    """Where one connection stands: still on Auth0 (any Auth0 callback: legacy or fallbacks), done
    (workos and only WorkOS callbacks), waiting (workos, not seen yet) or never seen (legacy, no traffic)."""
    workos, auth0 = m.decisions.get("workos", 0), m.decisions.get("auth0", 0)
    if auth0 or m.fallbacks:
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
    return Row(name, m.state, status, m.last, workos, auth0, m.fallbacks, reach)


def report_rows(snapshots: Iterable[Mapping[str, Mapping[str, Any]]]) -> list[Row]:
    order = {ON_AUTH0: 0, WAITING: 1, NEVER: 2, DONE: 3}
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
    header = ("connection", "state", "status", "last callback", "workos", "auth0", "fallbacks", "reachability")
    table = [header] + [
        (
            r.connection,
            r.state or "-",
            r.status,
            _age(r.last_callback, now),
            str(r.workos),
            str(r.auth0),
            str(r.fallbacks),
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
    lines.append(", ".join(f"{status}: {tally.get(status, 0)}" for status in (DONE, ON_AUTH0, WAITING, NEVER)))
    if unconfirmed:
        lines.append(
            f"reachability unconfirmed (never seen through the proxy; their IdP may post to Auth0 directly): "
            f"{', '.join(unconfirmed)}"
        )
    if since:
        lines.append(f"counted since {since} (process start; restarts reset the counts)")
    return "\n".join(lines) + "\n"


MAX_ROUTES_BYTES = 16 * 1024 * 1024


def fetch_progress(admin: str, timeout: float = 10.0) -> tuple[dict[str, Any], str | None]:
    """``GET <admin>/routes`` of a running proxy: (its connections_progress, progress_since).

    Raises ValueError with a one-line reason when the answer cannot be used.
    """
    import json
    import urllib.error
    import urllib.request

    url = admin.rstrip("/") + "/routes"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{admin}: give the operations listener's URL, e.g. http://127.0.0.1:9090")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            data = response.read(MAX_ROUTES_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"{url}: cannot connect: {reason}") from exc
    if len(data) > MAX_ROUTES_BYTES:
        raise ValueError(f"{url}: answer larger than {MAX_ROUTES_BYTES} bytes")
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{url}: not JSON") from exc
    progress = body.get("connections_progress") if isinstance(body, dict) else None
    if not isinstance(progress, dict):
        raise ValueError(f"{url}: no connections_progress (an sso-proxy older than this command?)")
    since = body.get("progress_since")
    return progress, since if isinstance(since, str) else None
