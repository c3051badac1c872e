"""The login load harness (bench/login_mix.py) in its quick mode, so it does not rot.

Two real replicas behind its round-robin balancer, the real stand-ins, small counts. What is asserted
is what the harness exists to measure: with Auth0's state form, Auth0-started logins make zero WorkOS
round trips in every scenario (cookies kept, dropped before the callback, 12 and 20 logins in flight
one after another and at once, the three-roll and the one-step key rotation) and no login is lost or
ends at the other side; and the harness does see a detour when there is one (the stand-in issuing
another form, cookies dropped). Figures under load are bench/NOTES.md's, never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.login_mix import QUICK, SCENARIOS, main, run


def test_zero_workos_round_trips_for_auth0_started_logins_in_every_scenario(tmp_path: Path) -> None:
    results = {r.scenario: r for r in run(list(SCENARIOS), QUICK, "auth0", ttl=2, tmp=tmp_path)}
    assert list(results) == list(SCENARIOS)
    for name, result in results.items():
        tally = result.tally
        assert tally.lost() == 0, (name, tally.ended)
        assert tally.wrong_side == 0, (name, tally.ended)
        assert tally.auth0_started_trips() == 0, (name, tally.workos_trips)
        # The WorkOS stand-in's own record agrees with what the browsers sent it.
        assert result.workos_received == sum(tally.workos_trips.values()), name
        assert result.counted.get("fallbacks true accepted", 0) == 0, name
        assert not any(key.startswith("disagreements") for key in result.counted), name
    baseline = results["baseline"].tally
    assert set(baseline.started) <= {"auth0-oidc", "auth0-saml", "workos-oidc", "workos-saml", "idp-saml", "idp-legacy"}
    assert sum(baseline.started.values()) == QUICK.browsers * (QUICK.logins or 0)

    dropped = results["dropped"]
    auth0_started = dropped.tally.started["auth0-oidc"] + dropped.tally.started["auth0-saml"]
    assert dropped.counted.get("callbacks auth0_state auth0") == auth0_started
    assert "callbacks auth0_transaction auth0" not in dropped.counted

    for tabs in (12, 20):
        one_after_another, at_once = results[f"tabs{tabs}-seq"], results[f"tabs{tabs}-burst"]
        # One after another: the list keeps 8; the older ones lost their cookie and went by the state.
        assert one_after_another.tally.most_logins_held == 8
        assert one_after_another.counted.get("callbacks auth0_state auth0") == tabs - 8
        # At once: every /authorize read an empty list, every cookie stayed.
        assert at_once.tally.most_logins_held == tabs
        assert "callbacks auth0_state auth0" not in at_once.counted

    three_rolls = results["rotate-3roll"]
    assert len(three_rolls.rolls) == 6  # three rolls, pod by pod
    assert "callbacks auth0_state auth0" not in three_rolls.counted  # every binding verified: the cookie alone
    assert len(results["rotate-1step"].rolls) == 2


def test_the_harness_sees_a_detour(tmp_path: Path) -> None:
    """Another state form, cookies dropped: every Auth0-started login goes to WorkOS and back once,
    a solicited fallback each, and still signs in at Auth0."""
    out = tmp_path / "mix.json"
    assert main(["--quick", "--state-form", "opaque", "--scenario", "dropped", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    auth0_started = result["started"].get("auth0-oidc", 0) + result["started"].get("auth0-saml", 0)
    assert auth0_started > 0
    assert result["workos_round_trips_of_auth0_started"] == auth0_started
    assert result["counted"]["fallbacks true accepted"] == auth0_started
    assert result["lost"] == 0 and result["wrong_side"] == 0
