"""The route map in force: initial load, keep-last-good reloads, file watching by content hash.

A new map is fully validated before it is swapped in as one reference (``RouteStore.current``), so
each request is decided against exactly one map. The file is re-read every interval and compared by
sha256, not by inode or mtime: a Kubernetes ConfigMap volume updates by swapping a symlink.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from proxy.errors import RouteMapError
from proxy.logs import log_event
from proxy.metrics import Metrics
from proxy.routemap import RouteMap, ambiguity_warnings, parse_routemap


@dataclass(frozen=True, slots=True)
class Loaded:
    """A route map with where and when it was loaded."""

    route_map: RouteMap
    source: str
    loaded_at: float


@dataclass(frozen=True, slots=True)
class ReloadResult:
    result: str  # success | unchanged | error
    sha256: str | None
    errors: tuple[str, ...] = ()


class RouteStore:
    """Holds the map in force; the only writer of ``current``."""

    def __init__(self, path: str, workos_domain: str | None, metrics: Metrics, logger: logging.Logger) -> None:
        self.path = path
        self.workos_domain = workos_domain
        self.metrics = metrics
        self.logger = logger
        self.current: Loaded | None = None
        self.last_error: str | None = None
        self._failed_sha: str | None = None

    def _read(self) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise RouteMapError(self.path, [f"{self.path}: cannot read: {exc.strerror or exc}"]) from exc

    def load_initial(self) -> Loaded:
        """Load at start; RouteMapError propagates (the service refuses to start)."""
        route_map = parse_routemap(self._read(), self.path, self.workos_domain)
        return self._install(route_map, "start")

    def _install(self, route_map: RouteMap, trigger: str) -> Loaded:
        previous = self.current
        loaded = Loaded(route_map, self.path, time.time())
        self.current = loaded
        self.last_error = None
        self._failed_sha = None
        m = self.metrics
        m.routemap_rejected.set(0)
        m.reloads.labels("success").inc()
        m.last_reload.set(loaded.loaded_at)
        m.routemap_info.clear()
        m.routemap_info.labels(route_map.sha256, self.path).set(1)
        for state, count in route_map.counts_by_state().items():
            m.routemap_connections.labels(state).set(count)
        m.connection_state.clear()
        for conn in route_map.connections.values():
            m.connection_state.labels(conn.name, conn.state).set(1)
        changed = []
        if previous is not None:
            old = previous.route_map.connections
            changed = [
                f"{n}: {old[n].state if n in old else 'absent'} -> {c.state}"
                for n, c in route_map.connections.items()
                if n not in old or old[n].state != c.state
            ]
        log_event(
            self.logger,
            logging.INFO,
            "route map loaded",
            trigger=trigger,
            source=self.path,
            sha256=route_map.sha256,
            mode=route_map.mode,
            unknown=route_map.unknown,
            connections=route_map.counts_by_state(),
            changed=changed,
        )
        for warning in ambiguity_warnings(route_map):
            log_event(self.logger, logging.WARNING, "ambiguous identifier", detail=warning)
        return loaded

    def reload(self, trigger: str) -> ReloadResult:
        """Re-read the file; swap in a valid changed map, keep the last good one otherwise."""
        try:
            data = self._read()
        except RouteMapError as exc:
            return self._reject(trigger, "unreadable", exc.errors)
        return self._apply(data, trigger)

    def _apply(self, data: bytes, trigger: str) -> ReloadResult:
        """Load ``data`` (one read: the content hashed is the content parsed)."""
        sha = hashlib.sha256(data).hexdigest()
        if self.current is not None and sha == self.current.route_map.sha256:
            self._settle(trigger)
            return ReloadResult("unchanged", sha)
        try:
            route_map = parse_routemap(data, self.path, self.workos_domain)
        except RouteMapError as exc:
            return self._reject(trigger, sha, exc.errors)
        self._install(route_map, trigger)
        return ReloadResult("success", route_map.sha256)

    def _settle(self, trigger: str) -> None:
        """The file holds the map in force again (a bad edit rolled back): no error is pending."""
        if self.last_error is None and self._failed_sha is None:
            return
        self.last_error = None
        self._failed_sha = None
        self.metrics.routemap_rejected.set(0)
        log_event(
            self.logger,
            logging.INFO,
            "route file matches the map in force again",
            trigger=trigger,
            source=self.path,
            sha256=self.current.route_map.sha256 if self.current else None,
        )

    def _reject(self, trigger: str, sha: str, errors: list[str]) -> ReloadResult:
        # Remembered whatever the trigger, so the watcher does not count the same content again.
        self._failed_sha = sha
        self.last_error = "\n".join(errors)
        self.metrics.reloads.labels("error").inc()
        self.metrics.routemap_rejected.set(1)
        log_event(
            self.logger,
            logging.ERROR,
            "route map rejected; last good map stays in force",
            trigger=trigger,
            source=self.path,
            errors=errors,
            in_force=self.current.route_map.sha256 if self.current else None,
        )
        return ReloadResult("error", None, tuple(errors))

    def poll(self) -> ReloadResult | None:
        """One watch tick: load the file when its content differs from the map in force and from the
        last rejected content (so a broken file is counted and logged once, not every tick)."""
        try:
            data: bytes | None = self._read()
            errors: list[str] = []
        except RouteMapError as exc:
            data, errors = None, exc.errors
        sha = hashlib.sha256(data).hexdigest() if data is not None else "unreadable"
        if self.current is not None and sha == self.current.route_map.sha256:
            self._settle("file")
            return None
        if sha == self._failed_sha:
            return None
        if data is None:
            return self._reject("file", sha, errors)
        return self._apply(data, "file")

    async def watch(self, interval: float) -> None:
        """Poll the file's content hash every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except Exception:  # a bug here must not end file watching for the life of the process
                self.logger.exception("route file watch failed; retrying next interval")
