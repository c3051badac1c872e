"""The route map in force: initial load, keep-last-good reloads, file watching by content hash.

A new map is fully validated before it is swapped in as one reference (``RouteStore.current``), so
each request is decided against exactly one map. The file is re-read every interval and compared by
sha256, not by inode or mtime: a Kubernetes ConfigMap volume updates by swapping a symlink.

Two rules keep a reload from hurting traffic :

- **Only a settled file is applied.** A file rewritten in place (an editor, ``cat > routes.yaml``,
  a config tool) is for a moment a valid-looking prefix of itself, for as long as its writer pauses.
  The watcher tells the two kinds of change apart by the file it reads (device and inode, from the
  open file): a file **replaced atomically** (a Kubernetes ConfigMap's symlink swap, ``routes set``'s
  temp file and rename) is a new file, complete when it appears, and is applied at the next poll;
  content **rewritten in place** (the same file) is applied only once it has read the same for
  :data:`IN_PLACE_SETTLE` seconds (a writer may pause up to 2 s), whatever the
  poll interval: the watcher polls again when that time is up. SIGHUP, ``POST
  /-/reload`` and the start read the file twice ``settle`` seconds apart (``SSO_PROXY_RELOAD_SETTLE``)
  and keep reading until two reads agree (a file still changing after a few rounds is not applied:
  the result is ``unsettled``, and the watcher picks it up once it settles).
- **Parsing never runs on the event loop, nor in this process.** Reading, hashing, indexing and
  installing a map run in a worker thread (:func:`asyncio.to_thread`), one reload at a time; the
  parse and validation run in a child process (:mod:`proxy.mapbuild`), which hands the connections
  back in small pickles, so the worker never holds the GIL for more than about a millisecond at a
  time and the parse's garbage never lands in the server's heap. The start uses the
  same child. The new map becomes visible with one reference assignment, after its metrics are in
  place.

Reloads are also cheap to ask for: content that equals the map in force or the last rejected
content is recognised by its hash without parsing, and counted and logged once per content, not per
request; SIGHUPs that arrive while one is waiting are folded into it, and a ``POST /-/reload`` that
arrives while another is waiting is answered ``busy``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.errors import RouteMapError
from proxy.heap import release_freed_memory
from proxy.logs import log_event
from proxy.mapbuild import build_routemap
from proxy.metrics import Metrics
from proxy.routing.routemap import RouteMap, ambiguity_warnings

# (bytes, source, WorkOS domain) -> a validated, indexed map, or RouteMapError.
Build = Callable[[bytes, str, "str | None"], RouteMap]

UNREADABLE = "unreadable"
# Seconds new content rewritten in place must read the same before the watcher applies it: more
# than the 2 s a writer may pause mid-file, independent of the poll interval.
IN_PLACE_SETTLE = 3.0
# Rounds of "read twice, settle seconds apart" before an explicit reload gives up on a file that
# keeps changing.
SETTLE_ROUNDS = 10


@dataclass(frozen=True, slots=True)
class Loaded:
    """A route map with where and when it was loaded."""

    route_map: RouteMap
    source: str
    loaded_at: float


@dataclass(frozen=True, slots=True)
class ReloadResult:
    result: str  # success | unchanged | error | unsettled | busy
    sha256: str | None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of the route file: its bytes (None when unreadable) and their sha256."""

    data: bytes | None
    sha256: str
    errors: tuple[str, ...] = ()
    file: tuple[int, int] | None = None  # (device, inode) of the file read: a new one was replaced atomically


class RouteStore:
    """Holds the map in force; the only writer of ``current``."""

    def __init__(
        self,
        path: str,
        workos_domain: str | None,
        metrics: Metrics,
        logger: logging.Logger,
        require: Callable[[RouteMap, str], list[str]] | None = None,
        settle: float = 0.5,
        build: Build = build_routemap,
    ) -> None:
        """``require``: a further check a map must pass to be served (errors, or [] to accept), e.g.
        :func:`proxy.retired.map_errors` when Auth0 is switched off. ``build``: how bytes become a map
        (a child process by default; :func:`proxy.routing.routemap.parse_routemap` in this process)."""
        self.path = path
        self.build = build
        self.require = require
        self.workos_domain = workos_domain
        self.metrics = metrics
        self.logger = logger
        self.settle = settle
        self.current: Loaded | None = None
        self.last_error: str | None = None
        self._failed_sha: str | None = None
        self._failed_errors: tuple[str, ...] = ()
        self._pending_sha: str | None = None  # the watcher saw this new content (written in place)...
        self._pending_since = 0.0  # ...first at this time.monotonic()
        self._polled_file: tuple[int, int] | None = None  # the file the watcher (or the start) last read
        self.in_place_settle = IN_PLACE_SETTLE
        self._lock: asyncio.Lock | None = None
        self._waiting: set[str] = set()  # triggers with a reload queued behind the lock

    # --- reading -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Read the file once; hash what was read (the content hashed is the content parsed)."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
                stat = os.fstat(fh.fileno())  # the file read, not whatever the path names a moment later
        except OSError as exc:
            return Snapshot(None, UNREADABLE, (f"{self.path}: cannot read: {exc.strerror or exc}",))
        return Snapshot(data, hashlib.sha256(data).hexdigest(), file=(stat.st_dev, stat.st_ino))

    def settled_snapshot(self, rounds: int = SETTLE_ROUNDS) -> Snapshot | None:
        """Two reads ``settle`` seconds apart that agree, or None when the file kept changing (blocking)."""
        first = self.snapshot()
        if self.settle <= 0 or self._known(first.sha256):
            return first
        for _ in range(rounds):
            time.sleep(self.settle)
            second = self.snapshot()
            if second.sha256 == first.sha256:
                return second
            first = second
        return None

    def _known(self, sha: str) -> bool:
        """Content already decided: the map in force, or the last rejected content (no need to settle)."""
        return (self.current is not None and sha == self.current.route_map.sha256) or sha == self._failed_sha

    # --- start -------------------------------------------------------------------------------

    def load_initial(self) -> Loaded:
        """Load at start; RouteMapError propagates (the service refuses to start)."""
        snap = self.settled_snapshot()
        if snap is None:
            raise RouteMapError(self.path, [f"{self.path}: still changing after {SETTLE_ROUNDS} reads; not loaded"])
        if snap.data is None:
            raise RouteMapError(self.path, list(snap.errors))
        self._polled_file = snap.file
        route_map = self.build(snap.data, self.path, self.workos_domain)
        refused = self.require(route_map, self.path) if self.require is not None else []
        if refused:
            raise RouteMapError(self.path, refused)
        return self._install(route_map, "start")

    # --- applying (worker thread) ------------------------------------------------------------

    def _install(self, route_map: RouteMap, trigger: str) -> Loaded:
        """Metrics first, then the one reference swap, so whoever sees the new map sees its metrics."""
        previous = self.current
        loaded = Loaded(route_map, self.path, time.time())
        m = self.metrics
        m.routemap_rejected.set(0)
        m.reloads.labels("success").inc()
        m.last_reload.set(loaded.loaded_at)
        m.routemap_info.clear()
        m.routemap_info.labels(route_map.sha256, self.path).set(1)
        for state, count in route_map.counts_by_state().items():
            m.routemap_connections.labels(state).set(count)
        changed: list[str] = []
        switched: list[str] = []  # connections of the previous map whose state this load changes
        if previous is not None:
            old = previous.route_map.connections
            for n, c in route_map.connections.items():
                was = old.get(n)
                if was is None or was.state != c.state:
                    changed.append(f"{n}: {was.state if was is not None else 'absent'} -> {c.state}")
                    if was is not None:
                        switched.append(n)
        # Per-connection series follow traffic: the switched connections are watched from now on.
        m.progress.use_map(route_map, switched)
        self.last_error = None
        self._failed_sha = None
        self._failed_errors = ()
        self.current = loaded
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

    def apply(self, snap: Snapshot, trigger: str) -> ReloadResult:
        """Load a settled snapshot: unchanged / known-bad content costs a hash compare, never a parse."""
        if self.current is not None and snap.sha256 == self.current.route_map.sha256:
            self._settle(trigger)
            return ReloadResult("unchanged", snap.sha256)
        if snap.sha256 == self._failed_sha:
            return ReloadResult("error", None, self._failed_errors)  # counted and logged when first seen
        if snap.data is None:
            return self._reject(trigger, snap.sha256, list(snap.errors))
        log_event(
            self.logger,
            logging.INFO,
            "route map changed; parsing",
            trigger=trigger,
            sha256=snap.sha256,
            bytes=len(snap.data),
        )
        try:
            route_map = self.build(snap.data, self.path, self.workos_domain)
        except RouteMapError as exc:
            return self._reject(trigger, snap.sha256, exc.errors)
        refused = self.require(route_map, self.path) if self.require is not None else []
        if refused:
            return self._reject(trigger, snap.sha256, refused)
        self._install(route_map, trigger)
        release_freed_memory()  # the replaced map is gone (nothing else refers to it): give its pages back
        return ReloadResult("success", route_map.sha256)

    def _settle(self, trigger: str) -> None:
        """The file holds the map in force again (a bad edit rolled back): no error is pending."""
        self._pending_sha = None
        if self.last_error is None and self._failed_sha is None:
            return
        self.last_error = None
        self._failed_sha = None
        self._failed_errors = ()
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
        # Remembered whatever the trigger, so no trigger counts or logs the same content again.
        self._failed_sha = sha
        self._failed_errors = tuple(errors)
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

    def explicit_reload(self, trigger: str) -> ReloadResult:
        """SIGHUP / endpoint, blocking: a settled read, then apply."""
        snap = self.settled_snapshot()
        if snap is None:
            log_event(
                self.logger,
                logging.WARNING,
                "route file still changing; not reloaded",
                trigger=trigger,
                source=self.path,
                settle_seconds=self.settle,
            )
            return ReloadResult(
                "unsettled",
                None,
                (f"{self.path}: still changing after {SETTLE_ROUNDS} reads {self.settle} s apart; not reloaded",),
            )
        result = self.apply(snap, trigger)
        if result.result == "unchanged":  # an operator asked: say so, as every other outcome is said
            log_event(self.logger, logging.INFO, "route map unchanged", trigger=trigger, sha256=result.sha256)
        return result

    def poll(self, now: float | None = None) -> ReloadResult | None:
        """One watch tick, blocking. New content in a file that replaced the one read last time
        (atomically: complete when it appeared) is applied now; new content written into the same
        file is applied once it has read the same for :attr:`in_place_settle` seconds (``now``:
        ``time.monotonic()``, passed by tests).

        Content equal to the map in force or to the last rejected content is not loaded again, so a
        broken file is counted and logged once, not every tick.
        """
        now = time.monotonic() if now is None else now
        snap = self.snapshot()
        replaced = snap.file is not None and self._polled_file is not None and snap.file != self._polled_file
        self._polled_file = snap.file
        if self.current is not None and snap.sha256 == self.current.route_map.sha256:
            self._settle("file")
            return None
        if snap.sha256 == self._failed_sha:
            self._pending_sha = None
            return None
        if not replaced:
            if snap.sha256 != self._pending_sha:
                self._pending_sha, self._pending_since = snap.sha256, now  # apply it once it has settled
                return None
            if now - self._pending_since < self.in_place_settle:
                return None
        self._pending_sha = None
        return self.apply(snap, "file")

    def next_poll(self, interval: float, now: float) -> float:
        """Seconds to the next watch tick: the interval, or sooner when content written in place
        will have settled (so the settle time does not depend on the interval)."""
        if self._pending_sha is None:
            return interval
        return max(0.05, min(interval, self._pending_since + self.in_place_settle - now))

    # --- the event loop's side ---------------------------------------------------------------

    async def reload(self, trigger: str) -> ReloadResult:
        """Reload off the event loop, one at a time. A trigger that already has a reload waiting is
        folded into it (``busy``): the waiting one will read the file as it is when it runs."""
        if trigger in self._waiting:
            return ReloadResult("busy", None)
        self._waiting.add(trigger)
        try:
            async with self._get_lock():
                self._waiting.discard(trigger)
                return await asyncio.to_thread(self.explicit_reload, trigger)
        finally:
            self._waiting.discard(trigger)

    async def poll_async(self) -> ReloadResult | None:
        async with self._get_lock():
            return await asyncio.to_thread(self.poll)

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def watch(self, interval: float) -> None:
        """Poll the file's content hash every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.next_poll(interval, time.monotonic()))
            try:
                await self.poll_async()
            except Exception:  # a bug here must not end file watching for the life of the process
                self.logger.exception("route file watch failed; retrying next interval")
