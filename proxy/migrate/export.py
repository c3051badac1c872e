"""SSO export package -> :class:`RouteMap` / ``routes.yaml`` (``sso-proxy routes import``).

The package is the one written by the WorkOS migration tooling (``export-auth0 --package --entities
sso``)::

    manifest.json             sourceTenant, e.g. globex-prod.eu.auth0.com
    sso/proxy_routes.csv      one row per Auth0 connection: ACS URLs, entity IDs, cutoverState
    sso/saml_connections.csv  idpEntityId, customEntityId, customAcsUrl, ... (and certificates, keys)
    sso/oidc_connections.csv  clientId, discoveryEndpoint, customRedirectUri, ... (and clientSecret)

``externalId`` is the Auth0 connection name in all three files. Only named, non-secret columns are
read (an allow-list), so client secrets, keys and certificates never reach the route map, its
summary or its warnings; a row whose field count differs from its header is skipped rather than
read, because shifted columns could move a secret into an identifier column.

What goes into a connection is everything that can identify it inside a callback:

- ``audiences`` (SAML ``<Audience>``, the SP entity ID): Auth0's default ``urn:auth0:<tenant>:<name>``
  (the exporter never writes it; the tenant comes from ``manifest.json``'s ``sourceTenant``),
  ``customEntityId``, ``sourceEntityId`` and also ``idpEntityId``, because the exporter fills that
  column from Auth0's ``options.entityId``, which on real tenants is the SP entity ID override.
- ``issuers``: ``idpEntityId`` (SAML ``<Issuer>``); for OIDC the issuer derived from
  ``discoveryEndpoint`` (OpenID Connect Discovery 1.0 section 4: ``<issuer>/.well-known/openid-configuration``),
  except where the discovery URL does not name the issuer tokens carry (:func:`oidc_issuers`):
  Microsoft Entra ID issues tokens with the tenant's GUID (``https://login.microsoftonline.com/<tid>/v2.0``,
  v1 ``https://sts.windows.net/<tid>/``; Microsoft identity platform "ID token claims reference"), so a
  tenant named by domain gives no issuer, and ``common``/``organizations``/``consumers`` name no tenant
  at all; ``https://accounts.google.com`` is every Google account's issuer. Those are noted, not added.
- ``acs_urls``: ``sourceAcsUrl``, ``customAcsUrl``, ``sourceRedirectUri``, ``customRedirectUri``.
- ``client_ids``: OIDC ``clientId`` (the id_token ``aud``).

``cutoverState`` maps to the route state: ``legacy`` and empty -> ``legacy``; ``workos`` -> ``workos``;
``manual`` -> ``legacy``: manual means an operator decides, so the connection stays on Auth0 until
someone runs ``sso-proxy routes set CONNECTION workos``. Any other value skips the row.

An identifier claimed by several connections identifies none of them (``RouteMap.ambiguous``); the
import warns, naming every claimant.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from typing import Mapping, TextIO
from urllib.parse import parse_qs, urlsplit

from proxy.errors import RouteMapError
from proxy.migrate import merge
from proxy.migrate.package import (
    ENCRYPTED_REMARK,
    OIDC_CSV,
    ROUTES_CSV,
    SAML_CSV,
    TENANT_HOST,
    ExportError,
    PackageNotes,
    Row,
    SkippedRow,
    locate_package,
    read_csv,
    read_notes,
    read_strategies,
    read_tenant,
    summary_lines,
    tenant_from_host,
)
from proxy.migrate.routefile import write_routemap_atomic
from proxy.routing.routemap import (
    ID_KINDS,
    PROTOCOLS,
    STATES,
    WSFED_STRATEGIES,
    Connection,
    RouteMap,
    ambiguity_warnings,
    make_routemap,
    name_problem,
    parse_routemap,
    workos_url_allowed,
)

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
# cutoverState -> route state. ``manual`` means an operator decides: it stays on Auth0 (legacy)
# until someone runs ``sso-proxy routes set``.
CUTOVER_STATES = {"": "legacy", "legacy": "legacy", "workos": "workos", "manual": "legacy"}
_MICROSOFT_HOSTS = frozenset(
    ("login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net")
)
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MULTI_TENANT = frozenset(("common", "organizations", "consumers"))
SHARED_ISSUERS = frozenset(("https://accounts.google.com", "accounts.google.com"))


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The route map built from an export package, and what the operator should know about it."""

    route_map: RouteMap
    warnings: list[str] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    tenant: str | None = None
    notes: PackageNotes = field(default_factory=PackageNotes)
    remarks: dict[str, list[str]] = field(default_factory=dict)  # connection -> comments in the map
    unconfirmed: list[str] = field(default_factory=list)  # connections whose IdP may post to Auth0
    custom_domain: str | None = None
    kept_absent: list[str] = field(default_factory=list)  # kept from the existing map, not in the export
    mapping_lines: list[str] = field(default_factory=list)  # what --workos-mapping did

    def summary(self) -> str:
        """Connections per protocol and state, identifiers per kind, skipped rows, ambiguity, warnings."""
        rm = self.route_map
        lines = [f"imported {len(rm.connections)} connection(s)" + (f" (tenant {self.tenant})" if self.tenant else "")]
        for protocol in PROTOCOLS:
            conns = [c for c in rm.connections.values() if c.protocol == protocol]
            per_state = ", ".join(f"{state} {sum(c.state == state for c in conns)}" for state in STATES)
            lines.append(f"  {protocol}: {len(conns)} ({per_state})")
        lines.append("identifiers:")
        for kind in ID_KINDS:
            unique = len(rm.index.get(kind, {}))
            shared = len(rm.ambiguous.get(kind, {}))
            lines.append(f"  {kind}: {unique + shared}" + (f" ({shared} ambiguous)" if shared else ""))
        lines.append(f"rows skipped: {len(self.skipped)}")
        lines.extend(f"  {row.file}:{row.line}: {row.reason}" for row in self.skipped)
        lines.extend(summary_lines(self.notes))
        shown = {t for texts in self.notes.remarks.values() for t in texts}
        own = {
            name: [t for t in texts if t not in shown and not t.startswith("reachability")]
            for name, texts in self.remarks.items()
        }
        own = {name: texts for name, texts in own.items() if texts}
        if own:
            lines.append(f"identification remarks (also in the map): {sum(len(t) for t in own.values())}")
            lines.extend(f"  {name}: {text}" for name, texts in sorted(own.items()) for text in texts)
        if self.custom_domain is not None:
            lines.append(
                f"callbacks not recorded on {self.custom_domain}: {len(self.unconfirmed)} connection(s) marked "
                "reachability: unconfirmed (their IdP may post to Auth0 directly; the first callback seen "
                "through the proxy confirms one)"
            )
            lines.extend(f"  {name}" for name in self.unconfirmed)
        if self.kept_absent:
            lines.append(
                f"not in this export, kept from the existing map: {len(self.kept_absent)} (--prune drops them)"
            )
            lines.extend(f"  {name}: {rm.connections[name].state}" for name in self.kept_absent)
        lines.extend(self.mapping_lines)
        ambiguous = ambiguity_warnings(rm)
        if ambiguous:
            lines.append(f"ambiguous identifiers (identify no connection): {len(ambiguous)}")
            lines.extend(f"  {line}" for line in ambiguous)
        shown = set(ambiguous)
        others = [w for w in self.warnings if w not in shown]
        if others:
            lines.append(f"warnings: {len(others)}")
            lines.extend(f"  {line}" for line in others)
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class _Draft:
    """A connection being assembled from several rows and files."""

    name: str
    protocol: str
    state: str
    origin: str  # "file:line" of the row that created it
    in_routes: bool = False
    organization: str | None = None  # the export's organization column
    organizations: tuple[str, ...] = ()  # from warnings.jsonl: the organizations sharing the connection
    workos_connection_id: str | None = None
    workos_acs_url: str | None = None
    strategy: str | None = None  # only where it matters: adfs (WS-Federation)
    # Ordered sets (dict keys): `value not in list` made many rows of one connection quadratic.
    ids: dict[str, dict[str, None]] = field(default_factory=lambda: {kind: {} for kind in ID_KINDS})
    remarks: list[str] = field(default_factory=list)
    callback_urls: list[str] = field(default_factory=list)  # as recorded by Auth0 (reachability)

    def add(self, kind: str, *values: str) -> None:
        for value in values:
            if value:
                self.ids[kind][value] = None

    def remark(self, text: str) -> None:
        if text not in self.remarks:
            self.remarks.append(text)

    def to_connection(self, reachability: str | None = None) -> Connection:
        return Connection(
            name=self.name,
            protocol=self.protocol,
            state=self.state,
            organizations=self.organizations or ((self.organization,) if self.organization else ()),
            workos_connection_id=self.workos_connection_id,
            workos_acs_url=self.workos_acs_url,
            reachability=reachability,
            strategy=self.strategy,
            audiences=tuple(self.ids["audiences"]),
            issuers=tuple(self.ids["issuers"]),
            acs_urls=tuple(self.ids["acs_urls"]),
            client_ids=tuple(self.ids["client_ids"]),
        )


def issuer_from_discovery(url: str) -> str:
    """The issuer a discovery document URL belongs to (OpenID Connect Discovery 1.0, section 4)."""
    if url.endswith(DISCOVERY_SUFFIX):
        return url[: -len(DISCOVERY_SUFFIX)]
    return url


def oidc_issuers(discovery: str) -> tuple[tuple[str, ...], str | None]:
    """The issuers an OIDC connection's tokens carry, from its discovery URL, and a remark when the
    URL does not tell (Entra tenant by domain, multi-tenant endpoints, Google's shared issuer)."""
    issuer = issuer_from_discovery(discovery)
    parts = urlsplit(issuer)
    host = (parts.hostname or "").lower()
    if issuer.rstrip("/") in SHARED_ISSUERS:
        return (), (
            f"issuer {issuer} is shared by every Google account, so it identifies nothing; identified by its client ID"
        )
    if host not in _MICROSOFT_HOSTS:
        return (issuer,), None
    tenant = parts.path.strip("/").split("/")[0].lower()
    if _GUID.fullmatch(tenant):
        # v2.0 endpoints issue the first, v1 endpoints (and v1 access tokens) the second.
        return (f"https://login.microsoftonline.com/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/"), None
    if tenant in MULTI_TENANT:
        return (), (
            f"Microsoft endpoint '{tenant}' names no tenant: tokens carry each user's own tenant as issuer, "
            "so no issuer identifies this connection; identified by its client ID"
        )
    return (), (
        f"Microsoft tenant named by domain {tenant!r}: tokens carry the tenant ID "
        "(https://login.microsoftonline.com/<tenant-id>/v2.0, v1 https://sts.windows.net/<tenant-id>/), "
        "which the export does not hold; add those issuers by hand (the tenant ID is in the issuer of "
        "the discovery document); identified by its client ID meanwhile"
    )


class _Builder:
    """Merges rows of the three CSVs into connection drafts; records skips and warnings."""

    def __init__(self) -> None:
        self.drafts: dict[str, _Draft] = {}
        self.warnings: list[str] = []
        self.skipped: list[SkippedRow] = []
        self.tenant_hints: list[str] = []

    def _draft(self, row: Row, label: str, protocol: str, state: str | None) -> _Draft | None:
        name = row.values.get("externalId", "")
        where = f"{label}:{row.line}"
        if not name:
            self.skipped.append(SkippedRow(label, row.line, "no externalId"))
            return None
        problem = name_problem(name)
        if problem is not None:
            self.skipped.append(SkippedRow(label, row.line, f"externalId {name!r} {problem}"))
            return None
        draft = self.drafts.get(name)
        if draft is None:
            draft = _Draft(name=name, protocol=protocol, state=state or "legacy", origin=where)
            self.drafts[name] = draft
            return draft
        if draft.protocol != protocol:
            self.skipped.append(
                SkippedRow(
                    label,
                    row.line,
                    f"{name}: protocol {protocol} conflicts with {draft.protocol} from {draft.origin}",
                )
            )
            return None
        # Only proxy_routes.csv (read first) carries a state, so a conflict is between two of its rows.
        if state is not None and state != draft.state:
            self.warnings.append(
                f"{name}: {where} says state {state} but {draft.origin} says {draft.state}; "
                "keeping legacy (stays on Auth0) until an operator decides"
            )
            draft.state = "legacy"
        return draft

    def _set_once(self, draft: _Draft, attr: str, value: str, where: str) -> None:
        current = getattr(draft, attr)
        if not value or value == current:
            return
        if current is None:
            setattr(draft, attr, value)
        else:
            self.warnings.append(f"{draft.name}: {where} gives {attr} {value!r}; keeping {current!r}")

    def add_route(self, row: Row, label: str) -> None:
        v = row.values
        if not v.get("externalId"):
            self.skipped.append(SkippedRow(label, row.line, "no externalId"))
            return
        provider = v.get("provider", "").lower()
        if provider not in ("", "auth0"):
            self.skipped.append(SkippedRow(label, row.line, f"provider {v['provider']!r} is not auth0"))
            return
        protocol = v.get("protocol", "").lower()
        if protocol not in PROTOCOLS:
            shown = repr(v["protocol"]) if v.get("protocol") else "missing"
            self.skipped.append(SkippedRow(label, row.line, f"protocol {shown} is not saml or oidc"))
            return
        cutover = v.get("cutoverState", "").lower()
        if cutover not in CUTOVER_STATES:
            self.skipped.append(
                SkippedRow(label, row.line, f"cutoverState {v['cutoverState']!r} is not legacy, workos or manual")
            )
            return
        draft = self._draft(row, label, protocol, CUTOVER_STATES[cutover])
        if draft is None:
            return
        draft.in_routes = True
        name, where = draft.name, f"{label}:{row.line}"
        if cutover == "manual":
            self.warnings.append(
                f"{name}: cutoverState manual: stays on Auth0 (legacy) until an operator runs "
                f"`sso-proxy routes set {name} workos`"
            )
        self._set_once(draft, "organization", v.get("organizationExternalId", ""), where)
        self._set_once(draft, "workos_connection_id", v.get("workosConnectionId", ""), where)
        acs = v.get("workosAcsUrl", "")
        if acs and not workos_url_allowed(acs, None):
            self.warnings.append(
                f"{name}: workosAcsUrl left out: not an https URL on a workos.com host "
                "(a URL on the WorkOS custom domain may be set by hand in routes.yaml)"
            )
        else:
            self._set_once(draft, "workos_acs_url", acs, where)
        for column in ("sourceAcsUrl", "customAcsUrl", "sourceRedirectUri", "customRedirectUri"):
            url = v.get(column, "")
            self._check_callback_url(name, column, url, where)
            draft.add("acs_urls", url)
            if url and url not in draft.callback_urls:
                draft.callback_urls.append(url)
        if protocol == "saml":
            draft.add("audiences", v.get("sourceEntityId", ""), v.get("customEntityId", ""))

    def _check_callback_url(self, name: str, column: str, url: str, where: str) -> None:
        if not url:
            return
        parts = urlsplit(url)
        self.tenant_hints.append(parts.hostname or "")
        named = parse_qs(parts.query).get("connection", [])
        if named and named[0] != name:
            self.warnings.append(f"{name}: {where} {column} names connection {named[0]!r}")

    def add_saml(self, row: Row, label: str) -> None:
        draft = self._draft(row, label, "saml", None)
        if draft is None:
            return
        v, where = row.values, f"{label}:{row.line}"
        self._set_once(draft, "organization", v.get("organizationExternalId", ""), where)
        entity = v.get("idpEntityId", "")
        # The exporter fills idpEntityId from Auth0's options.entityId: the IdP's entity ID on some
        # tenants, the SP entity ID override on others. Either way it can only mean this connection.
        draft.add("issuers", entity)
        draft.add("audiences", v.get("customEntityId", ""), entity)
        self._check_callback_url(draft.name, "customAcsUrl", v.get("customAcsUrl", ""), where)
        draft.add("acs_urls", v.get("customAcsUrl", ""))
        if v.get("customAcsUrl") and v["customAcsUrl"] not in draft.callback_urls:
            draft.callback_urls.append(v["customAcsUrl"])
        # Only whether a key is there is read, never the key itself.
        if v.get("assertionEncryptionKey"):
            draft.remark(ENCRYPTED_REMARK)

    def add_oidc(self, row: Row, label: str) -> None:
        draft = self._draft(row, label, "oidc", None)
        if draft is None:
            return
        v, where = row.values, f"{label}:{row.line}"
        self._set_once(draft, "organization", v.get("organizationExternalId", ""), where)
        draft.add("client_ids", v.get("clientId", ""))
        discovery = v.get("discoveryEndpoint", "")
        if discovery:
            if not discovery.endswith(DISCOVERY_SUFFIX):
                self.warnings.append(
                    f"{draft.name}: discoveryEndpoint does not end in {DISCOVERY_SUFFIX}; used as the issuer"
                )
            issuers, remark = oidc_issuers(discovery)
            draft.add("issuers", *issuers)
            if remark:
                draft.remark(remark)
        self._check_callback_url(draft.name, "customRedirectUri", v.get("customRedirectUri", ""), where)
        draft.add("acs_urls", v.get("customRedirectUri", ""))
        if v.get("customRedirectUri") and v["customRedirectUri"] not in draft.callback_urls:
            draft.callback_urls.append(v["customRedirectUri"])


def _callback_on(url: str, host: str) -> bool:
    parts = urlsplit(url)
    return parts.netloc.lower() == host or (parts.hostname or "") == host


def reachability_remark(urls: list[str], custom_domain: str) -> str | None:
    """Why a connection's callbacks may never reach the proxy, or None when one is on the custom domain.

    The export records the ACS/redirect URL Auth0 shows for the connection; an IdP configured with
    the tenant's ``*.auth0.com`` URL posts to Auth0 directly, one configured with the custom-domain URL
    comes through the proxy. The export cannot tell which the IdP uses; traffic can.
    """
    if any(_callback_on(url, custom_domain) for url in urls):
        return None
    hosts = sorted({urlsplit(url).netloc.lower() for url in urls if urlsplit(url).netloc})
    where = f"its recorded callback URLs are on {', '.join(hosts)}" if hosts else "no callback URL is recorded"
    return (
        f"reachability unconfirmed: {where}, not {custom_domain}; "
        "its IdP may post to Auth0 directly. The first callback seen through the proxy confirms it; "
        "else ask the customer to change the IdP's ACS/redirect URL to the custom domain"
    )


def _file_shared_connections(builder: _Builder, shared: Mapping[str, tuple[str, ...]]) -> None:
    """A connection shared by several organizations is filed under all of them.

    The exporter writes its connection id (``con_...``) in the organization column and lists the
    organizations in ``warnings.jsonl`` (``multi_org_connection_consolidated``). An organization
    column with a ``con_`` id and no such warning files it under none, and says so.
    """
    for name, draft in builder.drafts.items():
        orgs = shared.get(name, ())
        if orgs:
            draft.organizations = orgs
            draft.organization = None
        elif draft.organization and draft.organization.startswith("con_"):
            builder.warnings.append(
                f"{name}: organization column holds the connection id {draft.organization!r} and warnings.jsonl "
                "names no organizations for it; filed under no organization"
            )
            draft.organization = None


WSFED_REMARK = (
    "Auth0 {strategy} connection: WS-Federation (wresult/wctx), which WorkOS does not take (AD FS only as SAML). "
    "It stays on Auth0 until the customer adds a SAML relying party for WorkOS; then set moved_to_saml: true "
    "and `sso-proxy routes set {name} shadow|workos`"
)


def _mark_wsfed(builder: _Builder, strategies: Mapping[str, str]) -> None:
    """Issue 23: mark the connections whose raw Auth0 strategy is WS-Federation (``adfs``); the CSVs
    list such a connection as SAML (or the exporter skipped it, and warnings.jsonl brought it in)."""
    for name, draft in builder.drafts.items():
        strategy = strategies.get(name)
        if strategy not in WSFED_STRATEGIES:
            continue
        draft.strategy = strategy
        draft.remark(WSFED_REMARK.format(strategy=strategy, name=name))
        if draft.state != "legacy":
            builder.warnings.append(
                f"{name}: cutoverState {draft.state} ignored: an {strategy} connection stays legacy"
            )
            draft.state = "legacy"


def import_export(path: str, custom_domain: str | None = None) -> ImportResult:
    """Read an SSO export package (its root or its ``sso/`` folder) into a route map.

    ``custom_domain`` (the Auth0 custom domain this proxy serves): connections whose recorded
    callback URLs are all elsewhere are marked ``reachability: unconfirmed``.
    """
    root, sso = locate_package(path)
    builder = _Builder()
    tenant = read_tenant(root, builder.warnings)
    notes = read_notes(root)
    readers = ((ROUTES_CSV, builder.add_route), (SAML_CSV, builder.add_saml), (OIDC_CSV, builder.add_oidc))
    for filename, add in readers:
        label = f"sso/{filename}"
        if not (sso / filename).is_file():
            builder.warnings.append(f"{label}: not found")
            continue
        for row in read_csv(sso / filename, label, builder.skipped):
            add(row, label)
    for draft in builder.drafts.values():
        if not draft.in_routes:
            builder.warnings.append(
                f"{draft.name}: only in {draft.origin.rsplit(':', 1)[0]}, not in sso/{ROUTES_CSV}; imported as legacy"
            )
    # Enterprise connections the exporter skipped still receive callbacks (?connection=<name>): they
    # go in as legacy, so they stay on Auth0 whatever defaults.unknown says, and are named when Auth0
    # is switched off.
    for note in notes.skipped:
        if note.connection and note.protocol in PROTOCOLS and note.connection not in builder.drafts:
            builder.drafts[note.connection] = _Draft(note.connection, note.protocol, "legacy", "warnings.jsonl")
    _mark_wsfed(
        builder,
        {n.connection: n.strategy for n in notes.skipped if n.connection and n.strategy} | read_strategies(root),
    )
    for name, texts in notes.remarks.items():
        if name in builder.drafts:
            for text in texts:
                builder.drafts[name].remark(text)
    _file_shared_connections(builder, notes.organizations)
    if tenant is None:
        hosts = sorted({host for host in builder.tenant_hints if TENANT_HOST.match(host)})
        if len(hosts) == 1:
            tenant = tenant_from_host(hosts[0])
            builder.warnings.append(f"tenant {tenant} taken from callback URLs on {hosts[0]} (no usable manifest)")
        else:
            builder.warnings.append("tenant unknown: default SP entity IDs urn:auth0:<tenant>:<connection> not added")
    if tenant is not None:
        for draft in builder.drafts.values():
            if draft.protocol == "saml":
                default = f"urn:auth0:{tenant}:{draft.name}"
                draft.ids["audiences"] = dict.fromkeys([default, *draft.ids["audiences"]])
    domain = custom_domain.strip().lower() if custom_domain else None
    unconfirmed: list[str] = []
    connections: list[Connection] = []
    for name in sorted(builder.drafts):
        draft = builder.drafts[name]
        reach = None
        if domain:
            remark = reachability_remark(draft.callback_urls, domain)
            if remark is not None:
                draft.remark(remark)
                reach = "unconfirmed"
                unconfirmed.append(name)
        connections.append(draft.to_connection(reach))
    # A fresh map starts fully transparent: every connection legacy (as exported) and unidentified
    # callbacks to Auth0 too, so deploying the proxy changes nothing until an operator cuts over.
    route_map = make_routemap(connections, unknown="auth0", hashed=False)
    warnings = builder.warnings + ambiguity_warnings(route_map)
    return ImportResult(
        route_map=route_map,
        warnings=warnings,
        skipped=builder.skipped,
        tenant=tenant,
        notes=notes,
        remarks={name: list(d.remarks) for name, d in builder.drafts.items() if d.remarks},
        unconfirmed=unconfirmed,
        custom_domain=domain,
    )


def header_lines(result: ImportResult) -> list[str]:
    """The generated header of an imported map (no timestamps, so output is reproducible)."""
    lines = [
        "sso-proxy route map, generated by `sso-proxy routes import` from an SSO export package"
        + (f" (tenant {result.tenant})." if result.tenant else "."),
        "Comments starting with [import] are rewritten by every import; any other comment is kept.",
        "Move connections with `sso-proxy routes set CONNECTION... workos` (or back to legacy).",
        "An identifier listed under several connections identifies none of them.",
    ]
    lines.extend(f"ambiguous: {line}" for line in ambiguity_warnings(result.route_map))
    if result.notes.stay_on_auth0:
        lines.append(
            "Auth0 connections that stay on Auth0 (their logins also return to /login/callback with nothing "
            "this map can identify, so they follow defaults.unknown):"
        )
        lines.extend(f"  {note.text}" for note in result.notes.stay_on_auth0)
    return lines


def render(result: ImportResult, comments: merge.Comments | None = None) -> str:
    """The YAML text of an import: header, the exporter's remarks per connection, kept comments."""
    remarks = {name: list(texts) for name, texts in result.remarks.items()}
    for name in result.kept_absent:
        remarks.setdefault(name, []).insert(0, "not in the latest export; kept (`routes import --prune` drops it)")
    return merge.render(result.route_map, header_lines(result), remarks, comments)


def run_import(
    export_dir: str,
    output: str,
    stdout: TextIO,
    stderr: TextIO,
    workos_domain: str | None = None,
    *,
    prune: bool = False,
    custom_domain: str | None = None,
    workos_mapping: str | None = None,
) -> int:
    """``sso-proxy routes import EXPORT_DIR [-o PATH] [--prune] [--custom-domain HOST]``; ``-`` writes to stdout.

    The summary goes to stdout, or to stderr when the YAML does. When PATH already holds a valid
    route map, it is merged (:func:`proxy.migrate.merge.merge_maps`: states, defaults, hand-set fields and
    identifiers, comments and connections absent from the export are kept; ``prune`` drops the
    latter); an invalid one is not overwritten. ``workos_domain`` (``WORKOS_CUSTOM_DOMAIN``) lets
    hand-set ``workos_acs_url`` values on the WorkOS custom domain validate.
    """
    try:
        result = import_export(export_dir, custom_domain)
    except ExportError as exc:
        stderr.write(f"error: {exc}\n")
        return 1
    comments = None
    if output != "-" and os.path.exists(output):
        try:
            with open(output, "rb") as fh:
                old_text = fh.read().decode("utf-8")
            existing = parse_routemap(old_text, source=output, workos_domain=workos_domain)
        except (OSError, UnicodeDecodeError) as exc:
            stderr.write(f"error: {output} exists and cannot be read: {exc}\n")
            return 1
        except RouteMapError as exc:
            stderr.write(f"error: {output} exists and is not a valid route map; fix or remove it first\n{exc}\n")
            return 1
        route_map, notes, kept = merge.merge_maps(result.route_map, existing, prune, custom_domain is not None)
        comments = merge.read_comments(old_text)
        unconfirmed = [n for n, c in sorted(route_map.connections.items()) if c.reachability == "unconfirmed"]
        result = replace(
            result,
            route_map=route_map,
            warnings=result.warnings + notes,
            kept_absent=kept,
            unconfirmed=unconfirmed if custom_domain is not None else result.unconfirmed,
        )
    if workos_mapping is not None:
        from proxy.migrate import mapping

        try:
            rows, bad = mapping.read_mapping(workos_mapping)
        except mapping.MappingError as exc:
            stderr.write(f"error: --workos-mapping: {exc}\n")
            return 1
        applied = mapping.apply_mapping(result.route_map, rows, mapping.read_auth0_ids(locate_package(export_dir)[0]))
        result = replace(result, route_map=applied.route_map, mapping_lines=mapping.summary_lines(applied, bad))
    text = render(result, comments)
    try:
        written = parse_routemap(text, source=output, workos_domain=workos_domain)
    except RouteMapError as exc:  # a bug here, never the operator's: refuse to write it
        stderr.write(f"error: the generated route map does not validate\n{exc}\n")
        return 1
    if dict(written.connections) != dict(result.route_map.connections):  # the YAML round trip lost something
        stderr.write("error: the generated route map does not read back as built; nothing written\n")
        return 1
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if output == "-":
        stdout.write(text)
        stderr.write(result.summary())
        return 0
    try:
        write_routemap_atomic(text, output)
    except OSError as exc:
        stderr.write(f"error: cannot write {output}: {exc.strerror or exc}\n")
        return 1
    stdout.write(result.summary())
    stdout.write(f"wrote {output} (sha256 {digest})\n")
    return 0
