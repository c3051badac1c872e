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

from dataclasses import dataclass, field

from proxy.migrate import merge, streamimport
from proxy.migrate.drafts import (
    CUTOVER_STATES as CUTOVER_STATES,
)
from proxy.migrate.drafts import (
    DISCOVERY_SUFFIX as DISCOVERY_SUFFIX,
)
from proxy.migrate.drafts import (
    WSFED_REMARK as WSFED_REMARK,
)
from proxy.migrate.drafts import (
    Draft,
    DraftWarning,
    draft_warnings,
    finish,
    read_package,
)
from proxy.migrate.drafts import (
    issuer_from_discovery as issuer_from_discovery,
)
from proxy.migrate.drafts import (
    oidc_issuers as oidc_issuers,
)
from proxy.migrate.drafts import (
    reachability_remark as reachability_remark,
)
from proxy.migrate.importtext import KEPT_REMARK, Said, Tally, own_remarks
from proxy.migrate.importtext import header_lines as _header_lines
from proxy.migrate.importtext import summary as _summary
from proxy.migrate.package import PackageNotes, SkippedRow
from proxy.routing.routemap import ID_KINDS, Connection, RouteMap, ambiguity_warnings, make_routemap


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
        tally = Tally()
        for conn in rm.connections.values():
            tally.count(conn)
        for kind in ID_KINDS:
            tally.shared[kind] = len(rm.ambiguous.get(kind, {}))
            tally.ids[kind] = len(rm.index.get(kind, {})) + tally.shared[kind]
        said = Said(
            tenant=self.tenant,
            skipped=self.skipped,
            notes=self.notes,
            own={name: own_remarks(texts, self.notes) for name, texts in self.remarks.items()},
            custom_domain=self.custom_domain,
            unconfirmed=self.unconfirmed,
            kept_absent=[(name, rm.connections[name].state) for name in self.kept_absent],
            mapping_lines=self.mapping_lines,
            ambiguous=ambiguity_warnings(rm),
            warnings=self.warnings,
        )
        return _summary(tally, said)


def import_export(path: str, custom_domain: str | None = None) -> ImportResult:
    """Read an SSO export package (its root or its ``sso/`` folder) into a route map, in memory.

    ``custom_domain`` (the Auth0 custom domain this proxy serves): connections whose recorded
    callback URLs are all elsewhere are marked ``reachability: unconfirmed``. ``routes import``
    itself streams (:mod:`proxy.migrate.streamimport`); both finish drafts the same way.
    """
    drafts: dict[str, Draft] = {}
    package = read_package(path, drafts)
    domain = custom_domain.strip().lower() if custom_domain else None
    said: list[DraftWarning] = []
    connections: list[Connection] = []
    for name in sorted(drafts):
        conn, warned = finish(drafts[name], package, domain)
        said.extend(warned)
        connections.append(conn)
    # A fresh map starts fully transparent: every connection legacy (as exported) and unidentified
    # callbacks to Auth0 too, so deploying the proxy changes nothing until an operator cuts over.
    route_map = make_routemap(connections, unknown="auth0", hashed=False)
    return ImportResult(
        route_map=route_map,
        warnings=draft_warnings(package, said) + ambiguity_warnings(route_map),
        skipped=package.builder.skipped,
        tenant=package.tenant,
        notes=package.notes,
        remarks={name: list(d.remarks) for name, d in drafts.items() if d.remarks},
        unconfirmed=[c.name for c in connections if c.reachability == "unconfirmed"],
        custom_domain=domain,
    )


def header_lines(result: ImportResult) -> list[str]:
    """The generated header of an imported map (no timestamps, so output is reproducible)."""
    return _header_lines(result.tenant, ambiguity_warnings(result.route_map), result.notes)


def render(result: ImportResult, comments: merge.Comments | None = None) -> str:
    """The YAML text of an import: header, the exporter's remarks per connection, kept comments."""
    remarks = {name: list(texts) for name, texts in result.remarks.items()}
    for name in result.kept_absent:
        remarks.setdefault(name, []).insert(0, KEPT_REMARK)
    return merge.render(result.route_map, header_lines(result), remarks, comments)


# ``sso-proxy routes import``: it streams, in memory bounded whatever the export's size.
run_import = streamimport.run_import
