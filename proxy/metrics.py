"""Every metric object, defined once, on a registry of the service's own (no global state).

Label sets are bounded: connection labels only carry names from the route map in force, anything
else is ``_unknown``; methods outside the usual set are ``other``. The process model is one server
process per container, so a plain registry is correct; there is no multi-worker mode.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from typing import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from proxy import __version__
from proxy.progress import Progress

UNKNOWN = "_unknown"
METHODS = frozenset(("GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"))
# From a sub-millisecond redirect to a multi-second upstream call.
DURATION_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


_CLASSES = tuple(f"{first}xx" for first in range(10))


def status_class(status: int) -> str:
    """``2xx`` for 204: a label made once, not formatted per request."""
    first = status // 100
    return _CLASSES[first] if 0 <= first < 10 else f"{first}xx"


class _CounterCell:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramCell:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive


class LoopCounter:
    """A labelled counter for the request path, updated and scraped on the event loop thread only.

    prometheus_client's Counter takes a lock and runs checks on every ``inc``; on the callback path
    that was a measurable share of the per-request budget (bench/NOTES.md). Every update here
    happens on the one event loop thread, and the scrape runs on that same loop, so no lock is
    needed. A scrape may run in a worker thread (``/metrics`` renders off the loop): it copies the
    cells in one C call before reading them, and reads each value as a whole float.
    Exposed like a Counter (``<name>_total``), with HELP/TYPE even before the first sample.
    """

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry) -> None:
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = labelnames
        self._cells: dict[tuple[str, ...], _CounterCell] = {}
        registry.register(self)

    def labels(self, *values: str) -> _CounterCell:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = _CounterCell()
        return cell

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, cell in list(self._cells.items()):
            family.add_metric(list(values), cell.value)
        yield family


class LoopHistogram:
    """A histogram with the same loop-only contract as :class:`LoopCounter`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = buckets
        self._cells: dict[tuple[str, ...], _HistogramCell] = {}
        if not labelnames:
            self.labels()  # an unlabelled histogram shows zeros from the start, as prometheus_client's does
        registry.register(self)

    def labels(self, *values: str) -> _HistogramCell:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = _HistogramCell(self.bounds)
        return cell

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        les = [repr(float(b)) for b in self.bounds] + ["+Inf"]  # 0.005, 1.0: as prometheus_client writes them
        for values, cell in list(self._cells.items()):
            total = 0
            buckets = []
            for le, count in zip(les, list(cell.counts), strict=True):
                total += count
                buckets.append((le, float(total)))
            family.add_metric(list(values), buckets, cell.sum)
        yield family


class Metrics:
    """All of sso-proxy's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # *_created series double the series count and no dashboard or alert uses them. The switch
        # is process-wide in prometheus_client; this service has one Metrics per process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge("sso_proxy_build_info", "Build information.", ["version", "python"], registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.callbacks = LoopCounter(
            "sso_proxy_callbacks_total",
            "Callbacks by protocol, connection, decision, reason, identification.",
            ["protocol", "connection", "decision", "reason", "identified_by"],
            registry=r,
        )
        self.fallbacks = LoopCounter(
            "sso_proxy_fallbacks_total",
            "Callbacks that came back with fallback=auth0; solicited: true when this proxy had sent that callback "
            "to WorkOS (its cookie came back), false when not (anyone can add fallback=auth0), unknown with "
            "transaction binding off; verdict: Auth0's, accepted (a redirect without error) or refused (an error "
            "page, a 200 page, error=, no answer). Only accepted ones cannot be forged.",
            ["connection", "solicited", "verdict"],
            registry=r,
        )
        self.bindings = LoopCounter(
            "sso_proxy_bindings_total",
            "Logins Auth0 started that were bound to the browser (binding cookie set), by kind.",
            ["kind"],
            registry=r,
        )
        for kind in ("oidc_state", "saml_relaystate"):
            self.bindings.labels(kind)
        self.unbound = LoopCounter(
            "sso_proxy_unbound_callbacks_total",
            "Callbacks carrying a state or RelayState that no binding cookie named, by protocol and decision.",
            ["protocol", "decision"],
            registry=r,
        )
        self.shadow = LoopCounter(
            "sso_proxy_shadow_decisions_total",
            "In shadow mode: what normal mode would have decided.",
            ["connection", "would"],
            registry=r,
        )
        self.shadow_connection = LoopCounter(
            "sso_proxy_shadow_total",
            "Callbacks of a connection in state shadow that would have gone to WorkOS (they went to Auth0).",
            ["connection"],
            registry=r,
        )
        self.witness_disagreements = LoopCounter(
            "sso_proxy_witness_disagreements_total",
            "Callbacks a binding cookie routed to Auth0 (reason auth0_transaction) whose state/RelayState is not of "
            "the form of Auth0's own transaction state (the two witnesses disagree: Auth0 may have changed its "
            "format), by protocol.",
            ["protocol"],
            registry=r,
        )
        for protocol in ("saml", "oidc", "unknown"):
            self.witness_disagreements.labels(protocol)
        self.requests = LoopCounter(
            "sso_proxy_requests_total",
            "Public listener requests.",
            ["path_group", "method", "status_class"],
            registry=r,
        )
        self.duration = LoopHistogram(
            "sso_proxy_request_duration_seconds",
            "Public listener request duration (to the last byte).",
            ["path_group"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upstream_requests = LoopCounter(
            "sso_proxy_upstream_requests_total",
            "Requests forwarded to Auth0, by response status class.",
            ["status_class"],
            registry=r,
        )
        self.upstream_errors = LoopCounter(
            "sso_proxy_upstream_errors_total", "Forwarding errors by kind.", ["kind"], registry=r
        )
        for kind in ("connect", "timeout", "reset", "protocol", "refused", "client_gone"):
            self.upstream_errors.labels(kind)
        self.callback_errors = LoopCounter(
            "sso_proxy_callback_errors_total",
            "Callbacks that could not be delivered to Auth0 (the user saw a 502/504 page), by connection.",
            ["connection", "kind"],
            registry=r,
        )
        self.upstream_seconds = LoopHistogram(
            "sso_proxy_upstream_response_seconds",
            "Time from forwarding to Auth0's response headers.",
            [],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upstream_in_flight = Gauge("sso_proxy_upstream_in_flight", "Requests to Auth0 in flight.", registry=r)
        self.rejected = LoopCounter(
            "sso_proxy_rejected_requests_total", "Requests refused before routing.", ["reason"], registry=r
        )
        for reason in (
            "body_too_large",
            "incomplete_body",
            "body_budget",
            "body_timeout",
            "head_too_large",
            "trailers_too_large",
            "head_timeout",
            "bad_head",
            "connection_limit",
            "tls_handshake",
            "bad_target",
            "misdirected",
        ):
            self.rejected.labels(reason)
        self.admin_refused = Counter(
            "sso_proxy_admin_refused_total",
            "Requests the operations listener refused (bad Host, cross-site, body type, token, endpoint off).",
            ["reason"],
            registry=r,
        )
        for reason in ("host", "cross_site", "content_type", "token", "off"):
            self.admin_refused.labels(reason)
        self.reloads = Counter("sso_proxy_routemap_reloads_total", "Route map loads by result.", ["result"], registry=r)
        for result in ("success", "error"):
            self.reloads.labels(result)
        self.last_reload = Gauge(
            "sso_proxy_routemap_last_success_timestamp_seconds", "Unix time of the last successful load.", registry=r
        )
        self.routemap_info = Gauge(
            "sso_proxy_routemap_info", "The route map in force.", ["sha256", "source"], registry=r
        )
        # Running replicas keep the last good map, but a new one (scale-up, node drain) refuses to
        # start on this file: the signal that the ConfigMap must be fixed before anything restarts.
        self.routemap_rejected = Gauge(
            "sso_proxy_routemap_file_rejected",
            "1 while the route file holds content this replica rejected (the last good map stays in force).",
            registry=r,
        )
        self.routemap_connections = Gauge(
            "sso_proxy_routemap_connections", "Connections in the map in force, per state.", ["state"], registry=r
        )
        self.draining = Gauge("sso_proxy_draining", "1 while draining after SIGTERM.", registry=r)
        # Which transaction key signs and which verify, by public id (a rotation is safe while every
        # replica's signing key is among every replica's verifying ones: routes check-fleet).
        self.transaction_keys = Gauge(
            "sso_proxy_transaction_keys_info",
            "1, labelled with the id of the key that signs bindings and the ids of those that verify.",
            ["signs", "verifies"],
            registry=r,
        )
        # Per-connection last callback, counts by decision, state (GET /routes and three gauges), with
        # series only for connections seen or watched (progress.py).
        self.progress = Progress(r)
        self.auth0_off = Gauge(
            "sso_proxy_auth0_off", "1 when Auth0 is switched off (SSO_PROXY_AUTH0_OFF=true).", registry=r
        )
        self.auth0_off_callbacks = LoopCounter(
            "sso_proxy_auth0_off_callbacks_total",
            "With Auth0 switched off: callbacks that only Auth0 could have completed (the user saw "
            "'could not be completed'), by connection and reason.",
            ["connection", "reason"],
            registry=r,
        )
        self.auth0_off_requests = LoopCounter(
            "sso_proxy_auth0_off_requests_total",
            "With Auth0 switched off: non-callback requests (404 or the retired URL), by path "
            "(known Auth0 paths, else other).",
            ["path"],
            registry=r,
        )

    def method_label(self, method: str) -> str:
        return method if method in METHODS else "other"
