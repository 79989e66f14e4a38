"""A full pull from both ends (`hubspot_meet.from_both_ends`): every record exactly once, both
sides used, the search never paging by offset, whatever the two sides' speeds."""

from __future__ import annotations

import threading

from hypothesis import given, settings, strategies as st

from leadflow.crm.hubspot_meet import from_both_ends


class FakePortal:
    """Contacts with the given ids: a list endpoint (`after` = the next id to list) and a search
    by `hs_object_id < below`, descending. The search waits until the list has made
    `search_after_list_calls` calls (or is done): a slow search, without sleeping; the list's
    second call waits for the search's first with `list_waits_for_search`."""

    def __init__(self, ids, list_size=100, search_size=200, search_after_list_calls=0, list_waits_for_search=False):
        self.ids = sorted(ids)
        self.list_size, self.search_size = list_size, search_size
        self.search_after_list_calls = search_after_list_calls
        self.list_waits_for_search = list_waits_for_search
        self.calls = {"list": 0, "search": 0}
        self.changed = threading.Condition()

    def list_page(self, after):
        start = 0 if after is None else int(after)
        page = [i for i in self.ids if i >= start][: self.list_size]
        rest = [i for i in self.ids if i > page[-1]] if page else []
        with self.changed:
            if self.list_waits_for_search and self.calls["list"] == 1:
                self.changed.wait_for(lambda: self.calls["search"] >= 1, timeout=10)
            self.calls["list"] += 1
            if not rest:
                self.search_after_list_calls = 0  # the list is done: nothing to wait for
            self.changed.notify_all()
        return [{"id": str(i)} for i in page], (str(rest[0]) if rest else None)

    def search_below(self, below):
        with self.changed:
            self.changed.wait_for(lambda: self.calls["list"] >= self.search_after_list_calls, timeout=10)
            self.calls["search"] += 1
            self.changed.notify_all()
        found = sorted((i for i in self.ids if below is None or i < below), reverse=True)
        return [{"id": str(i)} for i in found[: self.search_size]]


def _pulled(portal):
    pages = list(from_both_ends(portal.list_page, portal.search_below))
    return [int(r["id"]) for _, records in pages for r in records], pages


def test_given_a_portal_then_every_contact_comes_once_and_both_sides_fetch():
    portal = FakePortal(range(1, 5_001), list_waits_for_search=True)
    ids, pages = _pulled(portal)
    assert sorted(ids) == list(range(1, 5_001))
    assert {side for side, _ in pages} == {"list", "search"}
    # together they made about as many calls as the pages needed, not each side the whole way
    assert portal.calls["list"] + portal.calls["search"] <= 5_000 // 200 + 5_000 // 100


def test_given_a_slow_search_then_the_list_takes_most_and_the_two_still_meet():
    portal = FakePortal(range(1, 3_001), search_after_list_calls=20)
    ids, pages = _pulled(portal)
    assert sorted(ids) == list(range(1, 3_001))
    listed = sum(len(r) for side, r in pages if side == "list")
    assert listed > 1_500


def test_given_no_contacts_then_nothing_comes():
    assert _pulled(FakePortal([]))[0] == []


@settings(max_examples=40, deadline=None)
@given(ids=st.sets(st.integers(1, 100_000), max_size=1_500),
       list_size=st.integers(1, 100), search_size=st.integers(1, 200), head_start=st.integers(0, 30))
def test_given_any_ids_and_speeds_then_each_contact_comes_exactly_once(ids, list_size, search_size, head_start):
    portal = FakePortal(ids, list_size, search_size, search_after_list_calls=head_start)
    pulled, _ = _pulled(portal)
    assert sorted(pulled) == sorted(ids)
