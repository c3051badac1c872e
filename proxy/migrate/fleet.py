"""``sso-proxy routes report --prometheus URL``: the rollout per connection, from the fleet's record.

Every replica's counters are scraped by Prometheus; this reads them back through its HTTP API
(``/api/v1/query``) and counts, per connection, the callbacks **since its state last changed**
(``state_changed`` in the map, or ``sso_proxy_connection_state_changed_seconds``), on every replica
that ever ran, restarted or scaled down.

What is read, and why raw samples rather than ``increase()``: for each metric one instant query of a
range selector, ``sso_proxy_callbacks_total[<from the oldest change, less LOOKBACK, to now>]``
(POST, so no URL grows with the map), which returns every stored sample of every series. Per series,
:func:`increase_since` then takes the last sample at or before the change as its baseline and adds
every rise after it, counting a drop as a counter reset (the new value is all new), as Prometheus's ``increase()`` does,
and also a restart of the replica (its ``process_start_time_seconds``) between two samples, which
``increase()`` misses when the new value is not lower than the old.
Unlike ``increase()`` (which needs two samples and extrapolates), a series whose first sample is after
the change (a replica started after the flip, a counter created by the first callback) is counted from
zero, so no callback after the flip is lost. The one approximation: callbacks between the last scrape
before the change and the change itself count as after it (at most one scrape interval).

Auth0's verdict: ``sso_proxy_fallbacks_total`` may carry ``verdict="accepted"|"refused"``; refused
fallbacks are taken out of the Auth0 count (a stranger's callbacks Auth0 refuses must not keep a
connection "still reaching Auth0"). Without the label every fallback is ``unknown`` and nothing is
taken out. The same numbers in PromQL, for a dashboard over a fixed range::

    sum by (connection, decision) (increase(sso_proxy_callbacks_total[1d]))
    - on (connection) group_left
      (sum by (connection) (increase(sso_proxy_fallbacks_total{verdict="refused"}[1d]))
       or on (connection) 0 * sum by (connection) (increase(sso_proxy_callbacks_total[1d])))
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proxy.errors import RouteMapError
from proxy.migrate.report import fetch_routes, read_json, replica_urls
from proxy.progress import UNKNOWN
from proxy.routing.routemap import RouteMap, format_instant, load_routemap, parse_instant

DONE = "done"
ON_AUTH0 = "still reaching Auth0"
NEVER = "never seen"
LOOKBACK = 300.0  # Prometheus's default lookback: a live series has a sample in any 5 minutes
MAX_WINDOW = 35 * 86400.0  # counts reach back at most this far (Prometheus keeps 15 days by default)
DEFAULT_WINDOW = 7 * 86400.0  # connections with no recorded change (and _unknown): the last 7 days
AUTH0_STARTED = frozenset(("auth0_transaction", "auth0_state"))
MAX_ANSWER_BYTES = 256 * 1024 * 1024

Sample = tuple[float, float]


def increase_since(samples: Sequence[Sample], since: float, restarts: Sequence[float] = ()) -> float:
    """How much a counter rose after ``since``: the baseline is its last sample at or before ``since``
    (none: the series started after it, counted from zero); a drop is a reset (the new value is new).

    ``restarts``: when a new process of its replica was first scraped (:func:`new_process_scrapes`).
    A restart between two samples is a reset even when the new value is not lower (1 before, 3
    after: 3 new, where ``increase()`` would see 2).
    """
    baseline = 0.0
    total = 0.0
    previous: Sample | None = None
    for at, value in samples:
        if value != value:  # NaN: a staleness marker, should one come through
            continue
        if at <= since:
            baseline = value
            previous = (at, value)
            continue
        last_at, last = previous if previous is not None else (since, baseline)
        restarted = any(last_at < start <= at for start in restarts)
        total += value if restarted or value < last else value - last
        previous = (at, value)
    return total


@dataclass(slots=True)
class Target:
    """A connection to report on: its state in force and when that state last changed."""

    state: str | None
    since: float | None


@dataclass(slots=True)
class Counts:
    workos: float = 0.0
    auth0: float = 0.0
    auth0_by_reason: dict[str, float] = field(default_factory=dict)
    fallbacks: dict[str, float] = field(default_factory=lambda: {"accepted": 0.0, "refused": 0.0, "unknown": 0.0})
    solicited: dict[str, float] = field(default_factory=dict)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)


def verdict(state: str | None, counts: Counts) -> str:
    """done (on WorkOS, nothing reached Auth0 since the change), still reaching Auth0, or never seen."""
    reaching = counts.auth0 - counts.fallbacks["refused"]
    if counts.workos + counts.auth0 <= 0:
        return NEVER
    if reaching > 0 or state == "legacy":
        return ON_AUTH0
    return DONE


def report_entries(
    targets: Mapping[str, Target],
    callbacks: Iterable[tuple[Mapping[str, str], Sequence[Sample]]],
    fallbacks: Iterable[tuple[Mapping[str, str], Sequence[Sample]]],
    default_start: float,
    oldest: float | None = None,
    restarts: Mapping[str, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """The report's rows (pure): per connection, its counts since its state changed (not before
    ``oldest``), or since ``default_start`` when no change is recorded (and for ``_unknown``).
    ``restarts``: per scrape target (``instance``), when its processes started."""
    starts_of = restarts or {}
    counts: dict[str, Counts] = {name: Counts() for name in targets}

    def start(name: str) -> float:
        target = targets.get(name)
        since = target.since if target is not None else None
        if since is None:
            return default_start
        return since if oldest is None else max(since, oldest)

    for labels, samples in callbacks:
        name = labels.get("connection", UNKNOWN)
        n = increase_since(samples, start(name), starts_of.get(labels.get("instance", ""), ()))
        c = counts.setdefault(name, Counts())
        if labels.get("decision") == "workos":
            c.workos += n
        elif labels.get("decision") == "auth0":
            c.auth0 += n
            reason = labels.get("reason", "")
            c.auth0_by_reason[reason] = c.auth0_by_reason.get(reason, 0.0) + n
    for labels, samples in fallbacks:
        name = labels.get("connection", UNKNOWN)
        n = increase_since(samples, start(name), starts_of.get(labels.get("instance", ""), ()))
        c = counts.setdefault(name, Counts())
        said = labels.get("verdict")
        c.fallbacks[said if said in ("accepted", "refused") else "unknown"] += n
        solicited = labels.get("solicited", "unknown")
        c.solicited[solicited] = c.solicited.get(solicited, 0.0) + n
    rows = []
    for name in sorted(counts):
        c = counts[name]
        target = targets.get(name, Target(None, None))
        if name not in targets and (name != UNKNOWN or c.workos + c.auth0 <= 0):
            continue  # a connection no longer in the map is not the rollout's; _unknown only when seen
        since = target.since
        rows.append(
            {
                "connection": name,
                "state": target.state,
                "since": format_instant_unix(since) if since is not None else None,
                "counted_from": format_instant_unix(start(name)),
                # Forwarded callbacks Auth0 refused (verdict label) are not "reaching Auth0".
                "callbacks": {"workos": _number(c.workos), "auth0": _number(c.auth0 - c.fallbacks["refused"])},
                "auth0_started": _number(sum(v for r, v in c.auth0_by_reason.items() if r in AUTH0_STARTED)),
                "auth0_by_reason": {r: _number(v) for r, v in sorted(c.auth0_by_reason.items()) if v},
                "fallbacks": {k: _number(v) for k, v in c.fallbacks.items()},
                "fallbacks_by_solicited": {k: _number(v) for k, v in sorted(c.solicited.items()) if v},
                "verdict": verdict(target.state, c),
            }
        )
    order = {ON_AUTH0: 0, NEVER: 1, DONE: 2}
    return sorted(rows, key=lambda r: (order[r["verdict"]], r["connection"]))


def format_instant_unix(at: float) -> str:

    return format_instant(datetime.fromtimestamp(at, UTC))


def targets_from_map(route_map: RouteMap) -> dict[str, Target]:
    return {
        name: Target(conn.state, parse_instant(conn.state_changed) if conn.state_changed else None)
        for name, conn in route_map.connections.items()
    }


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("connection", "state", "since", "workos", "auth0", "auth0-started", "fallbacks a/r/?", "verdict")
    table = [header] + [
        (
            str(r["connection"]),
            str(r["state"] or "-"),
            str(r["since"] or f"({r['counted_from']})"),
            str(r["callbacks"]["workos"]),
            str(r["callbacks"]["auth0"]),
            str(r["auth0_started"]),
            "/".join(str(r["fallbacks"][k]) for k in ("accepted", "refused", "unknown")),
            str(r["verdict"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    tally: dict[str, int] = {}
    for r in rows:
        if r["connection"] != UNKNOWN:
            tally[r["verdict"]] = tally.get(r["verdict"], 0) + 1
    lines += ["", ", ".join(f"{v}: {tally.get(v, 0)}" for v in (DONE, ON_AUTH0, NEVER))]
    lines.append("counted since each connection's state changed (in parentheses: no change recorded, counted from)")
    return "\n".join(lines) + "\n"


# --- the Prometheus HTTP API ---------------------------------------------------------------------------


class Prometheus:
    """The two reads the report needs from ``/api/v1/query`` (urllib: the CLI has no event loop)."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"{base}: give Prometheus's URL, e.g. http://prometheus:9090")
        self.base = base.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        form = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"}).encode()
        request = urllib.request.Request(f"{self.base}/api/v1/query", data=form, method="POST")  # noqa: S310
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        body = read_json(
            request,
            self.base,
            MAX_ANSWER_BYTES,
            self.timeout,
            http_detail=lambda exc: f" for {expr}: {_error_of(exc.read(4096))}",
            too_large="; name fewer connections",
            not_json=" (not Prometheus's API?)",
        )
        result = body.get("data", {}).get("result") if isinstance(body, dict) else None
        if body.get("status") != "success" or not isinstance(result, list):
            raise ValueError(f"{self.base}: query failed: {body.get('error', body)}")
        return [item for item in result if isinstance(item, dict)]

    def series(self, selector: str, start: float, at: float) -> list[tuple[dict[str, str], list[Sample]]]:
        """Every stored sample of every series ``selector`` matches in (start, at]."""
        seconds = max(1, int(at - start + 0.999))
        out = []
        for item in self.query(f"{selector}[{seconds}s]", at):
            samples = [(float(t), float(v)) for t, v in item.get("values", [])]
            out.append(({str(k): str(v) for k, v in item.get("metric", {}).items()}, samples))
        return out


def _error_of(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", ""))
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:200]


def targets_from_prometheus(api: Prometheus, at: float) -> dict[str, Target]:
    """Without a route map: the states the fleet serves and the changes it exports."""
    targets: dict[str, Target] = {}
    for item in api.query("max by (connection, state) (sso_proxy_connection_state) == 1", at):
        labels = item.get("metric", {})
        targets[str(labels.get("connection"))] = Target(str(labels.get("state")), None)
    for item in api.query("max by (connection) (sso_proxy_connection_state_changed_seconds)", at):
        name = str(item.get("metric", {}).get("connection"))
        if name in targets:
            targets[name].since = float(item["value"][1])
    return targets


def fleet_report(
    api: Prometheus, targets: Mapping[str, Target], at: float, default_window: float = DEFAULT_WINDOW
) -> list[dict[str, Any]]:
    """Read both counters' samples once, from the oldest start (bounded by MAX_WINDOW) on."""
    oldest = at - MAX_WINDOW
    default_start = at - default_window
    starts = [default_start, *(max(t.since, oldest) for t in targets.values() if t.since is not None)]
    first = min(starts) - LOOKBACK
    callbacks = api.series("sso_proxy_callbacks_total", first, at)
    fallbacks = api.series("sso_proxy_fallbacks_total", first, at)
    started: dict[str, list[float]] = {}
    for labels, samples in api.series('process_start_time_seconds{job=~".+"}', first, at):
        started.setdefault(labels.get("instance", ""), []).extend(new_process_scrapes(samples))
    return report_entries(targets, callbacks, fallbacks, default_start, oldest, started)


def new_process_scrapes(samples: Sequence[Sample]) -> list[float]:
    """When a replica restarted, as the scrape that first saw the new process: the time of the
    first sample whose ``process_start_time_seconds`` differs from the one before. Not the start
    time itself: it is derived from the boot time, which the kernel gives in whole seconds, so it
    can read up to a second early, before the old process's last scrape (which then looked like a
    restart between two samples of the old process and counted its value twice)."""
    out: list[float] = []
    previous: float | None = None
    for at, value in samples:
        if value != value:  # NaN: a staleness marker
            continue
        if previous is not None and value != previous:
            out.append(at)
        previous = value
    return out


# --- every replica on the map: the runbook's gate between the map and the application's flag ----------

# PromQL for "every replica serves sha X" (empty answer: yes), as the docs give it.
OFF_SHA_QUERY = 'sso_proxy_routemap_info unless on (instance) sso_proxy_routemap_info{{sha256="{sha}"}}'


def check_fleet(shas: Mapping[str, str | None], want: str) -> tuple[bool, list[str]]:
    """(every replica serves ``want``, one line per replica then a tally); None: the replica is down."""
    lines = []
    on = 0
    for replica in sorted(shas):
        sha = shas[replica]
        said = "down" if sha is None else "ok" if sha == want else "other map"
        on += sha == want
        lines.append(f"{replica}  {sha or '-'}  {said}")
    ok = bool(shas) and on == len(shas)
    lines.append(f"{on} of {len(shas)} replica(s) serve sha256 {want}" + ("" if ok else ": not yet"))
    return ok, lines


def shas_from_prometheus(api: Prometheus, at: float) -> dict[str, str | None]:
    """instance -> the sha256 it serves (None: Prometheus sees it down), for every sso-proxy job."""
    shas: dict[str, str | None] = {}
    jobs = {str(i.get("metric", {}).get("job")) for i in api.query("count by (job) (sso_proxy_routemap_info)", at)}
    for job in sorted(jobs):
        escaped = job.replace("\\", "\\\\").replace('"', '\\"')
        for item in api.query(f'up{{job="{escaped}"}}', at):
            if float(item["value"][1]) < 1:
                shas[str(item.get("metric", {}).get("instance"))] = None
    for item in api.query("max by (instance, sha256) (sso_proxy_routemap_info)", at):
        labels = item.get("metric", {})
        instance = str(labels.get("instance"))
        if instance not in shas or shas[instance] is not None:
            shas[instance] = str(labels.get("sha256"))
    return shas


def check_keys(keys: Mapping[str, tuple[str, tuple[str, ...]]]) -> list[str]:
    """Replicas -> (signing key id, verifying key ids): one line per pair where a login one replica
    binds would not verify on another (it would detour through WorkOS). [] while a rotation is safe."""
    problems = []
    for signer in sorted(keys):
        signs = keys[signer][0]
        for verifier in sorted(keys):
            if signs not in keys[verifier][1]:
                problems.append(
                    f"{signer} signs with key {signs}, which {verifier} cannot verify: finish this roll "
                    "(every replica) before the next"
                )
    return problems


def keys_from_prometheus(api: Prometheus, at: float) -> dict[str, tuple[str, tuple[str, ...]]]:
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for item in api.query("max by (instance, signs, verifies) (sso_proxy_transaction_keys_info)", at):
        labels = item.get("metric", {})
        verifies = tuple(v for v in str(labels.get("verifies", "")).split(",") if v)
        out[str(labels.get("instance"))] = (str(labels.get("signs")), verifies)
    return out


def run_prometheus_report(url: str, routes: str | None, fmt: str) -> int:
    """``routes report --prometheus``: the fleet's counters since each connection's change, printed."""

    at = time.time()
    try:
        api = Prometheus(url)
        if routes:
            targets = targets_from_map(load_routemap(routes, os.environ.get("WORKOS_CUSTOM_DOMAIN") or None))
        else:
            targets = targets_from_prometheus(api, at)
        rows = fleet_report(api, targets, at)
    except RouteMapError as exc:
        print(f"sso-proxy routes report: route map {exc.source} is invalid:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"sso-proxy routes report: {exc}", file=sys.stderr)
        return 1
    if fmt == "json":
        sys.stdout.write(json.dumps({"connections": rows}, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(rows))
    return 0


def run_check_fleet(prometheus: str | None, admins: list[str] | None, sha256: str | None, routes: str) -> int:
    """``routes check-fleet``: every replica serves the map (by sha256), and with Prometheus every
    replica verifies every signing key: the runbook's gate before switching an application's flag."""

    try:
        want = sha256 or load_routemap(routes, os.environ.get("WORKOS_CUSTOM_DOMAIN") or None).sha256
    except RouteMapError as exc:
        print(f"sso-proxy routes check-fleet: route map {exc.source} is invalid", file=sys.stderr)
        return 2
    shas: dict[str, str | None] = {}
    try:
        if prometheus:
            shas = shas_from_prometheus(Prometheus(prometheus), time.time())
        else:
            for admin in replica_urls(admins or []):
                try:
                    sha = fetch_routes(admin).get("sha256")
                    shas[admin] = sha if isinstance(sha, str) else None
                except ValueError as exc:
                    print(f"sso-proxy routes check-fleet: {exc}", file=sys.stderr)
                    shas[admin] = None
    except ValueError as exc:
        print(f"sso-proxy routes check-fleet: {exc}", file=sys.stderr)
        return 2
    ok, lines = check_fleet(shas, want)
    if prometheus:  # and the transaction keys: every replica verifies what every replica signs
        try:
            problems = check_keys(keys_from_prometheus(Prometheus(prometheus), time.time()))
        except ValueError as exc:
            problems = [str(exc)]
        lines += [f"keys: {problem}" for problem in problems] or ["keys: every replica verifies every signing key"]
        ok = ok and not problems
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if ok else 1
