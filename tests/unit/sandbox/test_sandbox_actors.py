"""The sandbox's reps: by weight as before, or by each lead's hidden propensity; the seeded
world's propensity and its new inbound leads."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from leadflow.sandbox.actors import Act, HubSpotInbound, PropensityAnswers, Seen, answer_handoffs, plan_acts
from leadflow.sandbox.properties import DAY_MS
from leadflow.sandbox.world import ACTIVITY_TIMES, company_universe, inbound_contacts, sales_propensity

ANCHOR = 1_760_000_000_000


def _records(n: int) -> list[Seen]:
    return [Seen(str(i), ["lead", "mql", "sql", "opportunity", None][i % 5], ["new", "open", None][i % 3], i % 2 == 0)
            for i in range(n)]


def test_without_propensity_the_reps_act_as_before():
    # What plan_acts gave for this seed before reps could judge by propensity.
    assert plan_acts(_records(12), share=0.3, rng=random.Random(7), answer_share=0.5) == [
        Act("reject", "6"), Act("work", "10"), Act("edit_title", "8"), Act("work", "7"), Act("edit_title", "2"),
        Act("edit_title", "5")]


def test_reps_move_high_propensity_leads_on_and_reject_low_ones():
    records = [Seen(str(i), "mql", "new", True) for i in range(2000)]
    answers = PropensityAnswers({str(i): (3.0 if i % 2 else -3.0) for i in range(2000)}, intercept=0.0, slope=1.5)
    acts = answer_handoffs(records, 1.0, random.Random(1), answers)
    assert len(acts) == 2000 and {a.action for a in acts} == {"to_opportunity", "reject"}
    moved_on = pd.Series({a.record_id: a.action == "to_opportunity" for a in acts})
    high = moved_on[[str(i) for i in range(1, 2000, 2)]].mean()
    low = moved_on[[str(i) for i in range(0, 2000, 2)]].mean()
    assert high > 0.97 and low < 0.03  # sigmoid(+-4.5) = 0.989 / 0.011


def test_reps_answer_only_leads_still_waiting_and_those_they_cannot_judge_by_weight():
    records = [Seen("moved-on", "opportunity", "new", True), Seen("not-handed-over", "mql", "new", False),
               Seen("worked", "mql", "in_progress", True), Seen("unknown", "mql", "open", True),
               Seen("known", "sql", "new", True)]
    acts = answer_handoffs(records, 1.0, random.Random(3), PropensityAnswers({"known": 10.0}))
    assert {a.record_id: a.action for a in acts}.keys() == {"unknown", "known"}
    assert {a.record_id: a.action for a in acts}["known"] == "to_opportunity"


def test_the_propensity_is_reproducible_from_the_seed_and_mostly_intent():
    rng = np.random.default_rng(0)
    fit, intent = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    a, b = sales_propensity(fit, intent, 9), sales_propensity(fit, intent, 9)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sales_propensity(fit, intent, 10))
    assert np.corrcoef(a, intent)[0, 1] > np.corrcoef(a, fit)[0, 1] > 0
    with pytest.raises(ValueError, match="shape"):
        sales_propensity(fit, intent[:10], 9)


def test_inbound_leads_arrive_fresh_with_their_latent_variables_and_nothing_latent_reaches_the_crm():
    universe = company_universe(4, 100)
    leads = inbound_contacts(universe, 5, 400, ANCHOR, recent_days=30)
    pd.testing.assert_frame_equal(leads, inbound_contacts(universe, 5, 400, ANCHOR, recent_days=30))
    assert len(leads) == 400 and set(leads["lifecyclestage"]) == {"lead"} and leads["hs_lead_status"].isna().all()
    assert {"_fit", "_intent", "_propensity"} <= set(leads.columns)
    for name in ACTIVITY_TIMES:
        times = pd.to_numeric(leads[name]).dropna()
        assert len(times) and times.between(ANCHOR - 30 * DAY_MS, ANCHOR).all(), name
    properties = HubSpotInbound.properties(leads.iloc[0].to_dict())
    assert not any(name.startswith("_") for name in properties)
    assert properties["lifecyclestage"] == "lead" and "hs_lead_status" not in properties
    assert properties["email"] == leads["email"].iloc[0]


def test_given_a_pooled_connection_closed_without_an_answer_then_an_actor_sends_again_once():
    """The server's keep-alive timeout closing an idle connection as it is reused: the actor's
    call is sent again on a new connection instead of failing."""
    import socket
    import threading

    from leadflow.sandbox.actors import actor_session

    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        for attempt in range(2):
            conn, _ = listener.accept()
            with conn:
                seen.append(conn.recv(65536))
                if attempt:  # the first connection is closed with no answer
                    conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    session = actor_session("token")
    response = session.post(f"http://127.0.0.1:{listener.getsockname()[1]}/crm/v3/objects/contacts/batch/create",
                            json={"inputs": []}, timeout=5)
    server.join(timeout=5)
    listener.close()
    assert response.status_code == 201
    assert len(seen) == 2 and all(r.startswith(b"POST /crm/v3/objects/contacts/batch/create") for r in seen)
