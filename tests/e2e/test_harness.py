"""The suite's own instruments, checked without the proxy: if these fail, no scenario means anything.

A response signed by the IdP verifies at the SP; the same response with one changed byte, or with
its signature removed, does not; the browser reaches the mapped host names and submits the IdP's
auto-posting form.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import BrowserContext

from .app_page import WELCOME, create_app_page
from .browser import travel
from .idp import OidcIdp, SamlIdp, SamlSp, Signing, create_idp_app
from .pki import make_key_pair
from .saml_sp import service_provider, validate
from .servers import StandIn, ThreadedServer

pytestmark = pytest.mark.e2e
SIGNINGS: tuple[Signing, ...] = ("assertion", "response", "both")
ACS = "http://app.globex.test:1/login/callback?connection=acme-okta"
SP = SamlSp("acme-okta", "urn:auth0:globex:acme-okta", (ACS, "http://app.globex.test:1/login/callback"))


@pytest.fixture(scope="module")
def idp(e2e_tools: None, tmp_path_factory: pytest.TempPathFactory) -> SamlIdp:
    keys = make_key_pair(tmp_path_factory.mktemp("pki"), "idp", "idp.customer.test")
    return SamlIdp("http://idp.customer.test/t/metadata", "http://idp.customer.test/t/sso", keys, [SP])


def _xml(saml_response: str) -> str:
    return base64.b64decode(saml_response).decode()


def _b64(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


@pytest.mark.parametrize("signing", SIGNINGS)
def test_signed_response_verifies(idp: SamlIdp, signing: Signing) -> None:
    got = validate(idp.issue(SP.connection, destination=ACS, signing=signing), idp, SP, signing)
    assert got.issuer == idp.entity_id
    assert got.audience == SP.entity_id
    assert got.name_id == "wile.e.coyote@customer.test"
    assert got.attributes["mail"] == ["wile.e.coyote@customer.test"]


@pytest.mark.parametrize("signing", SIGNINGS)
def test_changed_byte_fails_verification(idp: SamlIdp, signing: Signing) -> None:
    xml = _xml(idp.issue(SP.connection, destination=ACS, signing=signing))
    tampered = xml.replace("wile.e.coyote@customer.test", "road.runner@customer.test")
    assert tampered != xml
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        validate(_b64(tampered), idp, SP, signing)


@pytest.mark.parametrize("signing", SIGNINGS)
def test_removed_signature_fails(idp: SamlIdp, signing: Signing) -> None:
    xml = _xml(idp.issue(SP.connection, destination=ACS, signing=signing))
    stripped = re.sub(r"<(\w+:)?Signature[\s>].*?</(\w+:)?Signature>", "", xml, flags=re.DOTALL)
    assert "SignatureValue" in xml
    assert "SignatureValue" not in stripped
    with pytest.raises(Exception):  # noqa: B017 - pysaml2 raises several kinds
        validate(_b64(stripped), idp, SP, signing)


def test_other_idp_key_fails(idp: SamlIdp, tmp_path: Path) -> None:
    impostor = SamlIdp(idp.entity_id, idp.sso_url, make_key_pair(tmp_path, "impostor", "impostor"), [SP])
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        validate(impostor.issue(SP.connection, destination=ACS), idp, SP, "both")


def test_sp_initiated_request_round_trip(idp: SamlIdp) -> None:
    client = service_provider(idp, SP, "both", unsolicited=False)
    request_id, info = client.prepare_for_authenticate(
        entityid=idp.entity_id, relay_state="rs", assertion_consumer_service_url=SP.acs_urls[1]
    )
    location = dict(info["headers"])["Location"]
    saml_request = parse_qs(urlsplit(location).query)["SAMLRequest"][0]
    got_id, sp_entity_id, acs = idp.parse_request(saml_request)
    assert (got_id, sp_entity_id, acs) == (request_id, SP.entity_id, SP.acs_urls[1])
    response = idp.issue(SP.connection, destination=acs, in_response_to=request_id)
    assert validate(response, idp, SP, "both", request_id=request_id).in_response_to == request_id
    with pytest.raises(Exception):  # noqa: B017 - an answer to another request
        validate(response, idp, SP, "both", request_id="id-someone-else")


def test_id_token_verifies_and_detects_change() -> None:
    oidc = OidcIdp(issuer="http://idp.customer.test/oidc")
    token = oidc.id_token("client-1", nonce="n")
    claims = oidc.verify(token, "client-1")
    assert claims["aud"] == "client-1"
    assert claims["nonce"] == "n"
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(Exception, match="signature"):
        oidc.verify(f"{header}.{payload}.{flipped}", "client-1")


@pytest.fixture(scope="module")
def pages(idp: SamlIdp) -> Iterator[tuple[ThreadedServer, StandIn]]:
    app = StandIn("app.globex.test").start(create_app_page())
    server = ThreadedServer("idp.customer.test")
    server.start(create_idp_app({"t": idp}, OidcIdp(issuer="http://idp.customer.test/oidc")))
    yield server, app
    server.stop()
    app.stop()


def test_browser_posts_the_idp_form_under_mapped_host_names(
    browser: BrowserContext, pages: tuple[ThreadedServer, StandIn], idp: SamlIdp
) -> None:
    server, app = pages
    acs = f"http://app.globex.test:{app.port}/login/callback?connection=acme-okta"
    sp = SamlSp(SP.connection, SP.entity_id, (acs,))
    start = (
        f"http://idp.customer.test:{server.port}/t/sso/init?connection=acme-okta"
        f"&acs={acs.replace('?', '%3F').replace('=', '%3D')}&RelayState=r%2B1&signing=response"
    )
    app.clear()
    trip = travel(browser, start, f"http://app.globex.test:{app.port}/login/callback")
    assert trip.path() == [
        ("GET", f"http://idp.customer.test:{server.port}/t/sso/init", 200),
        ("POST", f"http://app.globex.test:{app.port}/login/callback", 200),
    ]
    assert WELCOME in trip.text
    (posted,) = app.requests()
    form = parse_qs(posted.body.decode())
    assert form["RelayState"] == ["r+1"]
    assert validate(form["SAMLResponse"][0], idp, sp, "response").audience == SP.entity_id


def test_the_walk_through_completes_every_flow() -> None:
    """`python -m tests.e2e.watch`, as the README gives it: every flow ends where it should, exit 0."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.watch"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.rstrip().endswith("all 6 flows ended where they should")
    assert "STOPPED" not in done.stdout
