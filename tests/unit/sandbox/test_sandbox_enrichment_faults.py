"""Injected faults of the sandbox's enrichment API (in-process app, injected clock and sleep)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadflow.sandbox import cli
from leadflow.sandbox.app import create_app
from leadflow.sandbox.enrichment_api import EnrichmentState, parse_enrichment_faults
from leadflow.sandbox.faults import FaultSpec, draw_keyed
from leadflow.sandbox.server import running_sandbox
from leadflow.sandbox.settings import SandboxSettings
from leadflow.sandbox.store import SandboxStore
from leadflow.sandbox.world import WorldConfig, seed_store

KEY = "ek-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FIND = "/v2/companies/find"


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("world") / "crm.db"
    store = SandboxStore(path)
    seed_store(store, WorldConfig(seed=4, contacts=200, anchor_ms=1_700_000_000_000))
    store.close()
    return path


@pytest.fixture(scope="module")
def known_domains(seeded_db) -> list[str]:
    store = SandboxStore(seeded_db)
    try:
        return [r[0] for r in store._conn.execute("SELECT domain FROM enrichment ORDER BY domain").fetchall()]
    finally:
        store.close()


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_client(seeded_db, tmp_path, clock):
    apps = []

    def make(enrichment_faults: str = "off", fault_seed: int = 0, **overrides):
        db = tmp_path / f"crm{len(apps)}.db"
        shutil.copy(seeded_db, db)
        settings = SandboxSettings(db_path=db, enrichment_key=KEY, fault_seed=fault_seed, **overrides)
        sleeps = Sleeps()
        app = create_app(settings, clock=clock, sleep=sleeps)
        app.state.sandbox.enrichment.configure_faults(enrichment_faults, fault_seed)
        apps.append(app)
        client = TestClient(app)
        client.headers.update(AUTH)
        return client, sleeps, app.state.sandbox

    yield make
    for app in apps:
        app.state.sandbox.store.close()


@pytest.mark.parametrize("text", ["partial=0.1", "invalid=0.1", "slow=0.1", "5xx=0.1,partial=0.2"])
def test_given_fault_kinds_a_get_cannot_get_then_the_spec_is_rejected_naming_them(text) -> None:
    kind = text.split(",")[-1].split("=")[0]
    with pytest.raises(ValueError, match=kind):
        parse_enrichment_faults(text)


def test_given_get_fault_kinds_then_the_spec_parses_like_the_hubspot_one() -> None:
    spec = parse_enrichment_faults("429=0.1,5xx=0.05,timeout=0.02")
    assert spec == FaultSpec.parse("429=0.1,5xx=0.05,timeout=0.02")
    assert parse_enrichment_faults(None) == parse_enrichment_faults("off") == FaultSpec()


def test_given_same_seeds_then_the_same_lookups_fail_whatever_the_request_order() -> None:
    spec = FaultSpec.parse("429=0.1,5xx=0.2,timeout=0.1")
    domains = [f"d{i}.com" for i in range(200)]
    a, b = EnrichmentState(seed=1, queued_share=0, faults=spec, fault_seed=3), \
        EnrichmentState(seed=1, queued_share=0, faults=spec, fault_seed=3)
    forward = {d: [a.draw_fault(d) for _ in range(3)] for d in domains}
    backward = {d: [b.draw_fault(d) for _ in range(3)] for d in reversed(domains)}
    assert forward == backward
    faults = [f for seq in forward.values() for f in seq]
    assert {f.server_error for f in faults if f.server_error} == {500, 502, 503}
    assert any(f.timeout for f in faults) and any(f.rate_limited for f in faults)
    other = EnrichmentState(seed=1, queued_share=0, faults=spec, fault_seed=4)
    assert {d: [other.draw_fault(d) for _ in range(3)] for d in domains} != forward


def test_given_rates_then_keyed_draws_respect_them_roughly() -> None:
    spec = FaultSpec.parse("5xx=0.1,timeout=0.1")
    draws = [draw_keyed(spec, 0, f"d{i}.com#1") for i in range(5000)]
    assert 400 < sum(bool(f.server_error) for f in draws) < 600
    # A timeout is drawn only for requests without a 5xx: about 0.9 * 0.1.
    assert 350 < sum(f.timeout for f in draws) < 550
    assert not draw_keyed(FaultSpec(), 0, "a.com#1").any


def test_given_5xx_faults_then_500_502_or_503_with_a_json_error_body(make_client, known_domains) -> None:
    client, _, sandbox = make_client("5xx=1", enrichment_rate_limit="off")
    codes = Counter()
    for domain in known_domains[:30]:
        r = client.get(FIND, params={"domain": domain})
        codes[r.status_code] += 1
        assert r.headers["content-type"] == "application/json" and r.json()["error"]["type"]
    assert set(codes) == {500, 502, 503}
    assert all(outcomes[0] in ("500", "502", "503") for outcomes in sandbox.enrichment.lookups().values())


def test_given_429_fault_then_rate_limit_error_although_the_window_has_room(make_client, known_domains) -> None:
    client, _, _ = make_client("429=1", enrichment_rate_limit="600/60")
    r = client.get(FIND, params={"domain": known_domains[0]})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit"
    assert int(r.headers["X-RateLimit-Remaining"]) > 0  # the limiter did not say no: the fault did


def test_given_timeout_fault_then_the_answer_is_held_then_sent_and_logged_as_timeout(
    make_client, known_domains
) -> None:
    client, sleeps, sandbox = make_client("timeout=1", enrichment_rate_limit="off", timeout_seconds=7.5)
    r = client.get(FIND, params={"domain": known_domains[0]})
    assert r.status_code == 200 and r.json()["domain"] == known_domains[0]
    assert sleeps == [7.5]
    assert sandbox.enrichment.lookups() == {known_domains[0]: ["timeout"]}


def test_given_timeout_on_a_queued_domain_then_the_retry_gets_the_company(make_client, known_domains) -> None:
    # The held answer was the 202: the server did the work, so the retry finds it done.
    client, _, sandbox = make_client("timeout=1", enrichment_rate_limit="off", enrichment_queued_share=1.0)
    domain = known_domains[0]
    assert client.get(FIND, params={"domain": domain}).status_code == 202
    sandbox.enrichment.configure_faults("off")
    assert client.get(FIND, params={"domain": domain}).status_code == 200
    assert sandbox.enrichment.lookups() == {domain: ["timeout", "200"]}


def test_given_no_faults_then_each_lookup_is_logged_by_status(make_client, known_domains) -> None:
    client, sleeps, sandbox = make_client(enrichment_rate_limit="off", enrichment_queued_share=0.0)
    client.get(FIND, params={"domain": known_domains[0]})
    client.get(FIND, params={"domain": "https://www.nobody-here.org/x"})
    assert sandbox.enrichment.lookups() == {known_domains[0]: ["200"], "nobody-here.org": ["404"]}
    assert sleeps == []


def test_given_bad_enrichment_faults_then_running_sandbox_refuses_before_seeding(tmp_path) -> None:
    with pytest.raises(ValueError, match="partial"):
        with running_sandbox(db_path=tmp_path / "crm.db", contacts=10, enrichment_faults="partial=0.5"):
            pass
    assert not (tmp_path / "crm.db").exists()


def test_given_bad_enrichment_faults_then_serve_exits_2_naming_the_option(tmp_path, capsys) -> None:
    rc = cli.main(["sandbox", "serve", "--db", str(tmp_path / "crm.db"), "--contacts", "20",
                   "--enrichment-faults", "5xx=2"])
    assert rc == 2
    assert "invalid --enrichment-faults" in capsys.readouterr().err
