"""Progress of the rollout in numbers: per connection, when it was last seen and what was decided.

:class:`Progress` is updated once per callback on the event loop (like the loop-only counters in
``metrics.py``, no lock) and read by the operations listener (``GET /routes``) and by ``/metrics``
as two gauges:

- ``sso_proxy_connection_last_callback_timestamp_seconds{connection}``: Unix time of the last
  callback identified as that connection (only connections seen since the process started);
- ``sso_proxy_connection_unconfirmed{connection}``: for connections the map marks
  ``reachability: unconfirmed`` (their recorded callback URLs are not on the custom domain), 1 until a
  callback of theirs is seen through this proxy, then 0: the first one confirms the IdP posts here;
- ``sso_proxy_connection_state_changed_seconds{connection}``: Unix time of the connection's
  ``state_changed`` in the map in force, for connections whose state changed in the last
  :data:`RECENT_SECONDS` (at most :data:`MAX_CHANGED_SERIES`, the most recent): the rollout's moving
  part, so dashboards and queries count "since cut-over" without a series per connection of a large
  map. ``routes report`` reads ``state_changed`` from the map itself, whatever its age;
- ``sso_proxy_connection_state{connection, state}``: 1 with the connection's state in the map in force.

**Series follow traffic, not the map**: a per-connection series exists only for a
connection this process has *seen* (a callback identified as it) or is *watched*: its state was
changed by a reload this process applied (cut over or rolled back since it started), and for the
unconfirmed gauge, one cut over to WorkOS. A map of 20,000 connections with 40 seen exposes a few
hundred series, not 20,000; the per-connection values are computed at scrape time from the map in
force, so nothing per connection is kept for the map's sake.

Collection copies the two dicts it iterates (one C call each) before reading them, so a scrape may
run in a worker thread while the event loop records callbacks.

Everything here counts since the process started; ``sso-proxy routes report`` (``proxy.migrate.report``)
merges replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from proxy.routing.routemap import STATES, RouteMap, parse_instant

UNKNOWN = "_unknown"
RECENT_SECONDS = 30 * 86400
MAX_CHANGED_SERIES = 1000


class _Seen:
    __slots__ = ("decisions", "fallbacks", "first", "last", "shadow")

    def __init__(self, now: float) -> None:
        self.first = now
        self.last = now
        self.decisions: dict[str, int] = {}
        self.fallbacks = 0
        self.shadow = 0  # in state shadow: callbacks that would have gone to WorkOS


class Progress:
    """Per-connection last callback and counts by decision; a Prometheus collector too."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._seen: dict[str, _Seen] = {}
        # Connections whose state a reload changed since start; replaced, never mutated, so a scrape
        # in a worker thread reads one consistent set.
        self._switched: frozenset[str] = frozenset()
        self._changed: tuple[tuple[str, float], ...] = ()  # (connection, state_changed), most recent first
        self._unconfirmed_cut_over: tuple[str, ...] = ()
        self.route_map: RouteMap | None = None
        self.started_at = time.time()
        if registry is not None:
            registry.register(self)

    def use_map(self, route_map: RouteMap, changed: Iterable[str] = ()) -> None:
        """The map in force; called by the route store on every load, with the connections whose
        state that load changed (they are watched from then on: their state series appear)."""
        self._switched = frozenset(name for name in (*self._switched, *changed) if name in route_map.connections)
        self._unconfirmed_cut_over = tuple(
            name
            for name, conn in route_map.connections.items()
            if conn.reachability == "unconfirmed" and conn.state == "workos"
        )
        self._changed = changed_recently(route_map)
        self.route_map = route_map

    def watched(self, rm: RouteMap) -> list[str]:
        """The connections of ``rm`` with per-connection series: seen, or changed by a reload."""
        seen = dict(self._seen)  # one C call: the loop may record callbacks meanwhile
        names = [name for name in seen if name in rm.connections]
        return names + [name for name in self._switched if name not in seen and name in rm.connections]

    def record(
        self, connection: str | None, decision: str, reason: str, now: float | None = None, shadowed: bool = False
    ) -> None:
        """One decided callback (``connection`` None: unidentified; ``shadowed``: a connection in state
        shadow whose callback would have gone to WorkOS)."""
        name = connection or UNKNOWN
        at = time.time() if now is None else now
        seen = self._seen.get(name)
        if seen is None:
            seen = self._seen[name] = _Seen(at)
        seen.last = at
        seen.decisions[decision] = seen.decisions.get(decision, 0) + 1
        if reason == "fallback":
            seen.fallbacks += 1
        if shadowed:
            seen.shadow += 1

    def seen(self, connection: str) -> bool:
        return connection in self._seen

    def entries(self, route_map: RouteMap | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Per connection of ``route_map`` (default: the map in force) and ``_unknown``, one at a time in
        name order (the map's, then those only seen): what ``GET /routes`` shows. Safe in a worker thread."""
        rm = route_map if route_map is not None else self.route_map
        names = sorted(rm.connections) if rm is not None else []
        seen_now = dict(self._seen)  # one C call: the loop may record callbacks meanwhile
        for name in [*names, *sorted(n for n in seen_now if rm is None or n not in rm.connections)]:
            conn = rm.connections.get(name) if rm is not None else None
            seen = seen_now.get(name)
            if seen is None and conn is not None and not conn.reachability:
                yield name, UNSEEN[conn.state]
                continue
            entry: dict[str, Any] = {
                "state": conn.state if conn is not None else None,
                "last_callback": _iso(seen.last) if seen else None,
                "last_callback_unix": round(seen.last, 3) if seen else None,
                "callbacks": dict(sorted(list(seen.decisions.items()))) if seen else {},
                "fallbacks": seen.fallbacks if seen else 0,
                "shadow": seen.shadow if seen else 0,
            }
            if conn is not None and conn.reachability:
                confirmed = conn.reachability == "confirmed" or seen is not None
                entry["reachability"] = "confirmed" if confirmed else "unconfirmed"
                entry["confirmed_by"] = (
                    "traffic" if seen is not None else "operator" if conn.reachability == "confirmed" else None
                )
            yield name, entry

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
        seen_now = dict(self._seen)  # one C call: the loop may record callbacks meanwhile
        for name, seen in seen_now.items():
            last.add_metric([name], seen.last)
        yield last
        rm, cut_over = self.route_map, self._unconfirmed_cut_over  # a reload may swap them meanwhile
        watched = self.watched(rm) if rm is not None else []
        state = GaugeMetricFamily(
            "sso_proxy_connection_state",
            "1 with its state for each connection of the map in force this process has seen a callback of "
            "or whose state a reload changed since it started (series follow traffic, not the map).",
            labels=["connection", "state"],
        )
        unconfirmed = GaugeMetricFamily(
            "sso_proxy_connection_unconfirmed",
            "1 for a connection marked reachability: unconfirmed whose callbacks this process has not "
            "seen yet (its IdP may post to Auth0 directly); 0 once one is seen. Only for connections cut "
            "over to WorkOS, seen, or changed by a reload.",
            labels=["connection"],
        )
        if rm is not None:
            for name in watched:
                state.add_metric([name, rm.connections[name].state], 1.0)
            # The unconfirmed ones an operator watches: cut over to WorkOS (their IdP may still post
            # to Auth0 directly), besides the seen and changed ones.
            for name in dict.fromkeys([*watched, *cut_over]):
                conn = rm.connections.get(name)
                if conn is not None and conn.reachability == "unconfirmed":
                    unconfirmed.add_metric([name], 0.0 if name in seen_now else 1.0)
        yield state
        yield unconfirmed
        changed = GaugeMetricFamily(
            "sso_proxy_connection_state_changed_seconds",
            f"Unix time each connection's state last changed (state_changed in the route map), for "
            f"connections changed in the last {RECENT_SECONDS // 86400} days.",
            labels=["connection"],
        )
        horizon = time.time() - RECENT_SECONDS
        for name, at in self._changed:
            if at >= horizon:
                changed.add_metric([name], at)
        yield changed


def changed_recently(route_map: RouteMap, limit: int = MAX_CHANGED_SERIES) -> tuple[tuple[str, float], ...]:
    """(connection, Unix time of state_changed) of the map's ``limit`` most recently changed connections."""
    stamped = [
        (name, parse_instant(conn.state_changed))
        for name, conn in route_map.connections.items()
        if conn.state_changed is not None
    ]
    stamped.sort(key=lambda item: (-item[1], item[0]))
    return tuple(stamped[:limit])


def _unseen_entry(state: str) -> dict[str, Any]:
    return {"state": state, "last_callback": None, "last_callback_unix": None, "callbacks": {}, "fallbacks": 0}


# A connection never seen and without reachability shows only its state: one shared entry per state
# (callers only serialise entries, never mutate one), not one dict per connection of the map: at
# 20,000 connections those dicts' garbage collections held the GIL.
UNSEEN = {state: _unseen_entry(state) for state in STATES}


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
