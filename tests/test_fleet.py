"""Tests for proxy.migrate.fleet (``routes report --prometheus``: counts since each change, from raw
samples) and the replica list of ``routes report --admin`` (proxy.migrate.report.replica_urls)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.migrate.fleet import DONE, NEVER, ON_AUTH0, Counts, Target, increase_since, report_entries, verdict
from proxy.migrate.report import replica_urls

S = 1000.0  # the change


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], 0),
        # baseline: the last sample at or before the change; only what came after counts
        ([(990, 5), (1000, 7), (1010, 9), (1020, 12)], 5),
        # a series first seen after the change (new replica, counter created by its first callback): from zero
        ([(1010, 1), (1020, 4)], 4),
        # a reset (restart): the new value is all new, as Prometheus's increase() takes it
        ([(990, 10), (1010, 12), (1020, 3), (1030, 5)], 7),
        # a reset right after the change
        ([(995, 10), (1005, 2)], 2),
        # only samples before the change: nothing since
        ([(900, 3), (990, 8)], 0),
        # flat after: nothing
        ([(990, 4), (1010, 4), (1020, 4)], 0),
    ],
)
def test_increase_since(samples: list[tuple[float, float]], expected: float) -> None:
    assert increase_since(samples, S) == expected


@pytest.mark.parametrize(
    ("samples", "restarts", "expected"),
    [
        # a restart between two samples is a reset even when the new value is not lower
        ([(1010, 1), (1030, 3)], [1020.0], 1 + 3),
        ([(990, 2), (1010, 2)], [1005.0], 2),  # restarted after the change: its 2 are new
        ([(990, 2), (1010, 5)], [900.0], 3),  # an earlier start changes nothing
        ([(1010, 1), (1030, 3)], [], 3),  # without it: what increase() would say
    ],
)
def test_increase_since_with_restarts(
    samples: list[tuple[float, float]], restarts: list[float], expected: float
) -> None:
    assert increase_since(samples, S, restarts) == expected


def _cb(conn: str, decision: str, reason: str, samples: list[tuple[float, float]]) -> tuple[dict[str, str], Any]:
    return {"connection": conn, "decision": decision, "reason": reason}, samples


def _fb(conn: str, samples: list[tuple[float, float]], **labels: str) -> tuple[dict[str, str], Any]:
    return {"connection": conn, "solicited": "true", **labels}, samples


def test_report_entries_count_since_each_change() -> None:
    targets = {
        "moved": Target("workos", S),
        "stray": Target("workos", S),
        "quiet": Target("workos", S),
        "old": Target("legacy", None),
        "stranger": Target("workos", S),
    }
    callbacks = [
        _cb("moved", "auth0", "mapped", [(990, 40)]),  # before the change: not counted
        _cb("moved", "workos", "mapped", [(1010, 3), (1020, 5)]),
        _cb("stray", "workos", "mapped", [(990, 1), (1020, 2)]),
        _cb("stray", "auth0", "auth0_transaction", [(1020, 2)]),
        _cb("stray", "auth0", "fallback", [(1020, 1)]),
        _cb("old", "auth0", "mapped", [(500, 1), (990, 3)]),  # counted from the default start (0)
        _cb("stranger", "workos", "mapped", [(1010, 1)]),
        _cb("stranger", "auth0", "fallback", [(1010, 4)]),
        _cb("_unknown", "workos", "unknown_default", [(1010, 2)]),
        _cb("gone", "auth0", "mapped", [(1010, 2)]),  # not in the map: not the rollout's
    ]
    fallbacks = [
        _fb("stray", [(1020, 1)]),  # no verdict label yet: unknown
        _fb("stranger", [(1010, 4)], verdict="refused"),  # Auth0 refused them: not "reaching Auth0"
    ]
    rows = {r["connection"]: r for r in report_entries(targets, callbacks, fallbacks, default_start=0.0)}
    assert set(rows) == {"moved", "stray", "quiet", "old", "stranger", "_unknown"}
    assert rows["moved"]["callbacks"] == {"workos": 5, "auth0": 0}
    assert (rows["moved"]["verdict"], rows["moved"]["since"]) == (DONE, "1970-01-01T00:16:40Z")
    assert rows["stray"]["callbacks"] == {"workos": 1, "auth0": 3}
    assert rows["stray"]["auth0_started"] == 2
    assert rows["stray"]["auth0_by_reason"] == {"auth0_transaction": 2, "fallback": 1}
    assert rows["stray"]["fallbacks"] == {"accepted": 0, "refused": 0, "unknown": 1}
    assert rows["stray"]["verdict"] == ON_AUTH0
    assert rows["quiet"]["callbacks"] == {"workos": 0, "auth0": 0} and rows["quiet"]["verdict"] == NEVER
    assert rows["old"]["since"] is None and rows["old"]["callbacks"]["auth0"] == 3
    assert rows["stranger"]["callbacks"] == {"workos": 1, "auth0": 0}
    assert rows["stranger"]["verdict"] == DONE
    for row in rows.values():  # JSON numbers, both destinations always there
        assert set(row["callbacks"]) == {"workos", "auth0"}
        assert all(isinstance(v, int) for v in row["callbacks"].values())


@pytest.mark.parametrize(
    ("state", "workos", "auth0", "refused", "expected"),
    [
        ("workos", 3, 0, 0, DONE),
        ("workos", 3, 1, 0, ON_AUTH0),
        ("workos", 3, 1, 1, DONE),
        ("workos", 0, 0, 0, NEVER),
        ("legacy", 0, 2, 0, ON_AUTH0),
        ("legacy", 0, 0, 0, NEVER),
        ("legacy", 2, 0, 0, ON_AUTH0),  # just rolled back: its next callbacks go to Auth0
    ],
)
def test_verdict(state: str, workos: int, auth0: int, refused: int, expected: str) -> None:
    counts = Counts(workos=workos, auth0=auth0)
    counts.fallbacks["refused"] = refused
    assert verdict(state, counts) == expected


def fake_dns(host: str, port: int) -> list[str]:
    return {"sso-proxy-ops.ns.svc": ["10.0.0.1", "10.0.0.2", "fd00::3"], "one": ["10.0.0.1"]}[host]


@pytest.mark.parametrize(
    ("admins", "expected"),
    [
        (["http://10.0.0.1:9090", "http://10.0.0.1:9090/"], ["http://10.0.0.1:9090"]),  # the same one twice: once
        (
            ["http://sso-proxy-ops.ns.svc:9090"],
            ["http://10.0.0.1:9090", "http://10.0.0.2:9090", "http://[fd00::3]:9090"],
        ),
        (["http://one:9090", "http://10.0.0.1:9090"], ["http://10.0.0.1:9090"]),  # by name and by address
        (["http://localhost:9090"], ["http://localhost:9090"]),
        (["http://10.0.0.1:9090", "http://10.0.0.1:9091"], ["http://10.0.0.1:9090", "http://10.0.0.1:9091"]),
    ],
)
def test_replica_urls(admins: list[str], expected: list[str]) -> None:
    assert replica_urls(admins, fake_dns) == expected


def test_replica_urls_errors() -> None:
    with pytest.raises(ValueError, match="give the operations listener's URL"):
        replica_urls(["10.0.0.1:9090"], fake_dns)

    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(ValueError, match="cannot resolve nope"):
        replica_urls(["http://nope:9090"], fails)


@pytest.mark.parametrize(
    ("shas", "ok", "tally"),
    [
        ({"a:9090": "x", "b:9090": "x"}, True, "2 of 2 replica(s) serve sha256 x"),
        ({"a:9090": "x", "b:9090": "old"}, False, "1 of 2 replica(s) serve sha256 x: not yet"),
        ({"a:9090": "x", "b:9090": None}, False, "1 of 2 replica(s) serve sha256 x: not yet"),
        ({}, False, "0 of 0 replica(s) serve sha256 x: not yet"),
    ],
)
def test_check_fleet(shas: dict[str, str | None], ok: bool, tally: str) -> None:
    from proxy.migrate.fleet import check_fleet

    got, lines = check_fleet(shas, "x")
    assert (got, lines[-1]) == (ok, tally)
    assert len(lines) == len(shas) + 1


@pytest.mark.parametrize(
    ("keys", "problems"),
    [
        ({"a": ("old", ("old",)), "b": ("old", ("old", "new"))}, []),  # roll 1, mid-way
        ({"a": ("old", ("old", "new")), "b": ("new", ("new", "old"))}, []),  # roll 2, mid-way
        ({"a": ("new", ("new", "old")), "b": ("new", ("new",))}, []),  # roll 3, mid-way
        # the one-step rotation, mid-way: b signs with a key a does not know
        ({"a": ("old", ("old",)), "b": ("new", ("new", "old"))}, ["b signs with key new, which a cannot verify"]),
    ],
)
def test_check_keys(keys: dict[str, tuple[str, tuple[str, ...]]], problems: list[str]) -> None:
    from proxy.migrate.fleet import check_keys

    got = check_keys(keys)
    assert len(got) == len(problems)
    for line, start in zip(got, problems, strict=True):
        assert line.startswith(start)


def test_a_restart_is_the_scrape_that_first_saw_the_new_process() -> None:
    """process_start_time_seconds can read up to a second early (the boot time is whole seconds):
    a restart is placed at the first scrape of the new process, never between two old samples."""
    from proxy.migrate.fleet import increase_since, new_process_scrapes

    starts = [(100.0, 50.3), (101.0, 50.3), (102.0, 50.3), (104.0, 102.6), (105.0, 102.6), (106.0, float("nan"))]
    assert new_process_scrapes(starts) == [104.0]
    # The old process's series stayed at 2 through its last scrape (103.0); the new one never had it.
    old_only = [(99.0, 2.0), (101.0, 2.0), (102.0, 2.0), (103.0, 2.0)]
    assert increase_since(old_only, 100.5, new_process_scrapes(starts)) == 0
    # A series both processes had: 2 before the restart, 2 again after it: 2 new, not 0, not 4.
    both = [(99.0, 2.0), (101.0, 2.0), (103.0, 2.0), (104.0, 2.0), (105.0, 2.0)]
    assert increase_since(both, 100.5, new_process_scrapes(starts)) == 2
