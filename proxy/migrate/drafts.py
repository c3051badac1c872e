"""Connection drafts of an SSO export package: its CSV rows merged per connection, then finished one
connection at a time (the exporter's notes, the tenant's default audience, reachability).

:mod:`proxy.migrate.export` describes what goes into a connection. The drafts live in any mapping
of name to draft: a dict for :func:`proxy.migrate.export.import_export`, or one kept on disk
(:mod:`proxy.migrate.spill`) when ``routes import`` streams a large export, so everything here looks
at one draft at a time and nothing depends on the order drafts are visited in, except through
:attr:`Draft.seq` (the order they were first read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from proxy.migrate.package import (
    ENCRYPTED_REMARK,
    OIDC_CSV,
    ROUTES_CSV,
    SAML_CSV,
    TENANT_HOST,
    PackageNotes,
    Row,
    SkippedRow,
    locate_package,
    read_csv,
    read_notes,
    read_strategies,
    read_tenant,
    tenant_from_host,
)
from proxy.routing.routemap import (
    ID_KINDS,
    PROTOCOLS,
    WSFED_STRATEGIES,
    Connection,
    name_problem,
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


@dataclass(slots=True)
class Draft:
    """A connection being assembled from several rows and files."""

    name: str
    protocol: str
    state: str
    origin: str  # "file:line" of the row that created it
    seq: int = 0  # the order it was first read in (warnings about drafts keep that order)
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


class Builder:
    """Merges rows of the three CSVs into connection drafts; records skips and warnings."""

    def __init__(self, drafts: MutableMapping[str, Draft] | None = None) -> None:
        self.drafts: MutableMapping[str, Draft] = {} if drafts is None else drafts
        self.count = 0  # drafts created
        self.warnings: list[str] = []
        self.skipped: list[SkippedRow] = []
        self.tenant_hints: set[str] = set()  # hosts of callback URLs (one per host, not per row)

    def new(self, draft: Draft) -> Draft:
        draft.seq = self.count
        self.count += 1
        self.drafts[draft.name] = draft
        return draft

    def _draft(self, row: Row, label: str, protocol: str, state: str | None) -> Draft | None:
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
            return self.new(Draft(name=name, protocol=protocol, state=state or "legacy", origin=where))
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

    def _set_once(self, draft: Draft, attr: str, value: str, where: str) -> None:
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
        self.tenant_hints.add(parts.hostname or "")
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


WSFED_REMARK = (
    "Auth0 {strategy} connection: WS-Federation (wresult/wctx), which WorkOS does not take (AD FS only as SAML). "
    "It stays on Auth0 until the customer adds a SAML relying party for WorkOS; then set moved_to_saml: true "
    "and `sso-proxy routes set {name} shadow|workos`"
)
NOTE_ORIGIN = "warnings.jsonl"  # the origin of a draft brought in by the exporter's notes


@dataclass(slots=True)
class Package:
    """What reading a package's files gave, beside the drafts: what finishing each draft needs."""

    builder: Builder
    tenant: str | None
    notes: PackageNotes
    strategies: Mapping[str, str]  # connection -> its WS-Federation strategy (only those)
    tenant_warnings: list[str] = field(default_factory=list)  # said after every draft's own


def read_package(path: str, drafts: MutableMapping[str, Draft] | None = None) -> Package:
    """Read an SSO export package's files a row at a time into ``drafts`` (one per connection)."""
    root, sso = locate_package(path)
    builder = Builder(drafts)
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
    # Enterprise connections the exporter skipped still receive callbacks (?connection=<name>): they
    # go in as legacy, so they stay on Auth0 whatever defaults.unknown says, and are named when Auth0
    # is switched off.
    for note in notes.skipped:
        if note.connection and note.protocol in PROTOCOLS and note.connection not in builder.drafts:
            builder.new(Draft(note.connection, note.protocol, "legacy", NOTE_ORIGIN))
    # The strategy from the raw connections, else from the exporter's own warning (an adfs connection
    # it skipped as outside its SAML/OIDC scope names its strategy there).
    named = {n.connection: n.strategy for n in notes.skipped if n.connection and n.strategy} | read_strategies(root)
    strategies = {name: s for name, s in named.items() if s in WSFED_STRATEGIES}
    package = Package(builder, tenant, notes, strategies)
    if tenant is None:
        hosts = sorted({host for host in builder.tenant_hints if TENANT_HOST.match(host)})
        if len(hosts) == 1:
            package.tenant = tenant_from_host(hosts[0])
            package.tenant_warnings.append(
                f"tenant {package.tenant} taken from callback URLs on {hosts[0]} (no usable manifest)"
            )
        else:
            package.tenant_warnings.append(
                "tenant unknown: default SP entity IDs urn:auth0:<tenant>:<connection> not added"
            )
    return package


# A warning about one draft: (kind, the draft's seq, text). Kinds are said in this order, each in the
# order the drafts were read: only in one file, WS-Federation, organization column.
DraftWarning = tuple[int, int, str]


def finish(draft: Draft, package: Package, domain: str | None) -> tuple[Connection, list[DraftWarning]]:
    """One draft made a connection: the exporter's notes about it, WS-Federation, the
    organizations sharing it, the tenant's default audience, reachability on ``domain``."""
    name, said = draft.name, []
    if not draft.in_routes and draft.origin != NOTE_ORIGIN:
        where = draft.origin.rsplit(":", 1)[0]
        said.append((0, draft.seq, f"{name}: only in {where}, not in sso/{ROUTES_CSV}; imported as legacy"))
    strategy = package.strategies.get(name)
    if strategy is not None:
        draft.strategy = strategy
        draft.remark(WSFED_REMARK.format(strategy=strategy, name=name))
        if draft.state != "legacy":
            text = f"{name}: cutoverState {draft.state} ignored: an {strategy} connection stays legacy"
            said.append((1, draft.seq, text))
            draft.state = "legacy"
    for text in package.notes.remarks.get(name, ()):
        draft.remark(text)
    # A connection shared by several organizations is filed under all of them: the exporter writes
    # its connection id (con_...) in the organization column and lists the organizations in
    # warnings.jsonl (multi_org_connection_consolidated). A con_ id without that warning files it
    # under none, and says so.
    orgs = package.notes.organizations.get(name, ())
    if orgs:
        draft.organizations = orgs
        draft.organization = None
    elif draft.organization and draft.organization.startswith("con_"):
        text = (
            f"{name}: organization column holds the connection id {draft.organization!r} and warnings.jsonl "
            "names no organizations for it; filed under no organization"
        )
        said.append((2, draft.seq, text))
        draft.organization = None
    if package.tenant is not None and draft.protocol == "saml":
        default = f"urn:auth0:{package.tenant}:{name}"
        draft.ids["audiences"] = dict.fromkeys([default, *draft.ids["audiences"]])
    reach = None
    if domain:
        remark = reachability_remark(draft.callback_urls, domain)
        if remark is not None:
            draft.remark(remark)
            reach = "unconfirmed"
    return draft.to_connection(reach), said


def draft_warnings(package: Package, said: list[DraftWarning]) -> list[str]:
    """The import's warnings before ambiguity: the rows', the drafts' (by kind, in reading order), the tenant's."""
    return [*package.builder.warnings, *(text for _, _, text in sorted(said)), *package.tenant_warnings]
