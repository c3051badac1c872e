"""Tests for the streamed ``routes import`` (proxy.migrate.streamimport, spill, routestream): the same
bytes as rendering the whole map in memory, and memory that does not grow with the export."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path

import pytest

from proxy.errors import RouteMapError
from proxy.migrate import spill, streamimport
from proxy.migrate.drafts import Draft
from proxy.migrate.export import import_export, render
from proxy.migrate.merge import merge_maps, read_comments
from proxy.migrate.routestream import read_comments_file, scan_routemap
from proxy.routing.routemap import Connection, parse_routemap

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PACKAGES = [
    FIXTURES / "auth0-export" / "redacted",
    FIXTURES / "auth0-export" / "with-secrets",
    FIXTURES / "export" / "shared-adfs",
]
OPERATED = """\
# team: identity-platform
version: 1
defaults:
  unknown: workos  # until binding is on
  mode: normal
connections:
  # about acme, é
  acme-okta:  # the big one
    protocol: saml
    state: workos   # moved
    notes: "call Bob é"  # who
    audiences:
      - urn:extra:one  # by hand
      - urn:extra:two
  ghost-conn:
    protocol: oidc
    state: legacy
    client_ids: [abc]   # flow list
  flow-conn: {protocol: oidc, state: workos}  # flow body
  other: {protocol: saml, state: legacy,
    issuers: [x]}  # two lines
# trailing
"""


def generated_package(root: Path, n: int) -> Path:
    """An export package of ``n`` connections, half SAML and half OIDC (as bench/routemap_scale.py)."""
    sso = root / "sso"
    sso.mkdir(parents=True)
    (root / "manifest.json").write_text('{"sourceTenant": "globex-prod.eu.auth0.com"}')
    with (
        (sso / "proxy_routes.csv").open("w", newline="") as r,
        (sso / "saml_connections.csv").open("w", newline="") as s,
        (sso / "oidc_connections.csv").open("w", newline="") as o,
    ):
        rw, sw, ow = csv.writer(r), csv.writer(s), csv.writer(o)
        rw.writerow(["externalId", "provider", "protocol", "cutoverState", "organizationExternalId", "sourceAcsUrl"])
        sw.writerow(["externalId", "organizationExternalId", "idpEntityId", "customEntityId"])
        ow.writerow(["externalId", "organizationExternalId", "clientId", "discoveryEndpoint"])
        for i in range(n):
            name, protocol = f"conn-{i:06d}", "oidc" if i % 2 else "saml"
            acs = f"https://globex-prod.eu.auth0.com/login/callback?connection={name}"
            rw.writerow([name, "auth0", protocol, "legacy", f"org_{i:06d}", acs])
            if protocol == "saml":
                sw.writerow([name, f"org_{i:06d}", f"http://www.okta.com/exk{i:06d}", ""])
            else:
                ow.writerow([name, f"org_{i:06d}", f"client-{i:06d}", f"https://idp-{i:06d}.example.com/"])
    return root


def streamed(package: Path, output: Path, *extra: str, **kwargs: object) -> tuple[int, str]:
    out = io.StringIO()
    code = streamimport.run_import(str(package), str(output), out, out, **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue()


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
@pytest.mark.parametrize("domain", [None, "login.globex.com"])
def test_streamed_import_writes_what_rendering_in_memory_writes(
    package: Path, domain: str | None, tmp_path: Path
) -> None:
    result = import_export(str(package), domain)
    code, said = streamed(package, tmp_path / "routes.yaml", custom_domain=domain)
    assert code == 0, said
    assert (tmp_path / "routes.yaml").read_text() == render(result)
    assert said.startswith(result.summary())


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
@pytest.mark.parametrize("prune", [False, True])
def test_streamed_reimport_merges_as_merge_maps_does(package: Path, prune: bool, tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text(OPERATED)
    existing = parse_routemap(OPERATED)
    result = import_export(str(package))
    merged, _, kept = merge_maps(result.route_map, existing, prune)
    from dataclasses import replace

    expected = render(replace(result, route_map=merged, kept_absent=kept), read_comments(OPERATED))
    code, said = streamed(package, target, prune=prune)
    assert code == 0, said
    assert target.read_text() == expected


@pytest.mark.parametrize(
    "text",
    [
        OPERATED,
        "",
        "- a list # c\n",
        "version: 1 # v\nconnections: {}  # none\n",
        "connections:\n  a:  # x\n    protocol: saml\n    issuers:\n      - {k: v}  # odd item\n"
        "  # between\n  b: |\n    text # not a comment\n",
        "not: [valid  # c\n",
        "defaults: 1  # d\nconnections: 5  # c\n",
        "# top\r\nversion: 1\r\nconnections:\r\n  a:  # crlf\r\n    state: legacy  # s\r\n",
    ],
)
def test_comments_read_as_a_stream_are_those_read_whole(text: str, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_bytes(text.encode())
    assert read_comments_file(str(path)) == read_comments(text)


@pytest.mark.parametrize(
    "text",
    [
        "version: 2\nconnections:\n  a: {protocol: saml, state: nope}\n  b: {protocol: x, state: legacy}\n",
        "version: 1\nextra: 1\ndefaults: {unknown: maybe, other: 1}\nconnections: []\n",
        "version: 1\nconnections:\n  a: {protocol: saml, state: legacy}\n  a: {protocol: saml, state: legacy}\n",
        "version: 1\nconnections:\n  a: &x {protocol: saml, state: legacy}\n  b: *x\n",
        "- just a list\n",
        "version: 1\nconnections: {a: [unclosed\n",
    ],
)
def test_a_route_file_scanned_as_a_stream_has_the_errors_of_a_parse(text: str) -> None:
    with pytest.raises(RouteMapError) as whole:
        parse_routemap(text, source="r.yaml")
    seen: list[Connection] = []
    with pytest.raises(RouteMapError) as stream:
        scan_routemap(io.BytesIO(text.encode()), seen.append, "r.yaml")
    assert stream.value.errors == whole.value.errors


def test_a_written_map_that_does_not_read_back_is_not_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("version: 1\nconnections: {}\n")
    broken = [f"  {name}: {{protocol: saml}}" for name in ("x",)]
    monkeypatch.setattr(streamimport.merge, "render_connection", lambda conn, *a: broken)
    code, said = streamed(PACKAGES[0], target)
    assert code == 1
    assert "does not validate" in said
    assert target.read_text() == "version: 1\nconnections: {}\n"
    monkeypatch.setattr(
        streamimport.merge, "render_connection", lambda conn, *a: [f"  {conn.name}: {{protocol: oidc, state: legacy}}"]
    )
    code, said = streamed(PACKAGES[0], target)
    assert (code, said) == (1, "error: the generated route map does not read back as built; nothing written\n")
    assert [p.name for p in tmp_path.iterdir()] == ["routes.yaml"]


def test_drafts_on_disk_come_back_as_written_in_name_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "CACHED_DRAFTS", 2)
    with spill.Spill() as store:
        drafts = store.drafts
        for name in ("c", "a", "b", "d"):
            drafts[name] = Draft(name, "saml", "legacy", "here")
        drafts["a"].add("issuers", "x")  # taken back from disk, changed in place, written back
        assert "a" in drafts and "z" not in drafts and len(drafts) == 4
        with pytest.raises(KeyError):
            drafts["z"]
        assert list(drafts) == ["a", "b", "c", "d"]
        assert list(drafts["a"].ids["issuers"]) == ["x"]


def _peak_bytes(package: Path, output: Path) -> int:
    tracemalloc.start()
    try:
        code, said = streamed(package, output)
        assert code == 0, said
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_imports_memory_does_not_grow_with_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four times the connections, about the same peak: only the names (the YAML reader's duplicate-key
    check of the file read back) grow; in memory the whole map was about 3 KB per connection."""
    monkeypatch.setattr(spill, "CACHED_DRAFTS", 64)
    small = generated_package(tmp_path / "small", 1000)
    large = generated_package(tmp_path / "large", 4000)
    _peak_bytes(small, tmp_path / "warm.yaml")  # imports and caches, counted in neither
    peak_small = _peak_bytes(small, tmp_path / "small.yaml")
    peak_large = _peak_bytes(large, tmp_path / "large.yaml")
    assert peak_large < 1.5 * peak_small, (peak_small, peak_large)
    assert (tmp_path / "large.yaml").read_text().count("\n  conn-") == 4000
