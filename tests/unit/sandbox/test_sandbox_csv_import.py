"""`leadflow sandbox import`: a lead export (CSV) becomes sandbox contacts under a mapping and a
contacts config; re-importing updates the same contacts; bad rows are counted, never fatal."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from leadflow.predict.mapping import load_mapping
from leadflow.sandbox import cli
from leadflow.sandbox.csv_import import (
    ImportConfigError,
    id_slug,
    import_csv,
    load_import_config,
    parse_import_config,
)
from leadflow.sandbox.store import SandboxStore
from leadflow.quality.emails import is_valid_email

COLUMNS = ["Prospect ID", "Lead Number", "Lead Origin", "Lead Source", "Do Not Email", "Converted", "TotalVisits",
           "Total Time Spent on Website", "Page Views Per Visit", "Last Activity", "Country",
           "What is your current occupation", "Tags"]


def _lead(pid: str, **cells: str) -> dict[str, str]:
    row = {"Prospect ID": pid, "Lead Number": "1000", "Lead Origin": "API", "Lead Source": "Google",
           "Do Not Email": "No", "Converted": "0", "TotalVisits": "4.0", "Total Time Spent on Website": "120",
           "Page Views Per Visit": "2.5", "Last Activity": "Email Opened", "Country": "India",
           "What is your current occupation": "Working Professional", "Tags": "Will revert after reading"}
    row.update(cells)
    return row


def _write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _contacts(store: SandboxStore) -> dict[str, dict]:
    """Imported contacts by prospect id: their props plus the column-backed fields."""
    rows = store.list_page("contacts", after_id=0, limit=100_000)
    return {r.props["xeducation_prospect_id"]: {**r.props, "_id": r.id, "_modified": r.modified_ms}
            for r in rows if "xeducation_prospect_id" in r.props}


@pytest.fixture
def mapping():
    return load_mapping("x_education")


# --- importing ---------------------------------------------------------------------------------------
def test_import_creates_one_contact_per_row_with_mapped_properties(store, tmp_path, mapping):
    path = _write_csv(tmp_path / "leads.csv", [
        _lead("AAA-1", **{"Converted": "1", "Do Not Email": "Yes", "Lead Number": "660737"}),
        _lead("bbb-2", **{"Lead Origin": "Landing Page Submission", "TotalVisits": "3.0",
                          "Page Views Per Visit": "1.5"}),
    ])

    report = import_csv(store, path, mapping)

    assert (report.rows, report.created, report.updated, report.skipped) == (2, 2, 0, [])
    contacts = _contacts(store)
    a, b = contacts["AAA-1"], contacts["bbb-2"]
    assert a["email"] == "prospect-aaa-1@xeducation.example.com"
    assert a["lifecyclestage"] == "customer" and b["lifecyclestage"] == "lead"
    assert a["hs_email_optout"] is True and b["hs_email_optout"] is False
    assert a["lastname"] == "Lead 660737"
    assert a["hs_analytics_num_visits"] == 4 and a["hs_analytics_num_page_views"] == 10  # 4 x 2.5
    assert b["hs_analytics_num_page_views"] == 4  # 3 x 1.5 = 4.5, rounded half to even
    assert a["num_conversion_events"] == 0 and b["num_conversion_events"] == 1
    assert a["country"] == "India" and a["jobtitle"] == "Working Professional"
    assert a["lead_source"] == "Google" and a["time_on_website_seconds"] == 120
    assert "Tags" not in json.dumps(a) and "Will revert" not in json.dumps(a)  # leaking column not imported
    assert all(is_valid_email(c["email"]) for c in contacts.values())


def test_missing_markers_of_the_mapping_are_stored_as_empty(store, tmp_path, mapping):
    path = _write_csv(tmp_path / "leads.csv", [
        _lead("p1", **{"What is your current occupation": "Select", "Country": "", "TotalVisits": "NA",
                       "Lead Source": "select"}),
    ])

    import_csv(store, path, mapping)

    contact = _contacts(store)["p1"]
    for prop in ("jobtitle", "country", "hs_analytics_num_visits", "hs_analytics_num_page_views", "lead_source"):
        assert prop not in contact, prop
    assert "Select" not in json.dumps(contact) and "select" not in json.dumps(contact).replace("@", "")


def test_reimport_updates_the_same_contacts_and_bumps_lastmodifieddate(store, clock, tmp_path, mapping):
    first = _write_csv(tmp_path / "v1.csv", [_lead("p1"), _lead("p2", Country="India")])
    import_csv(store, first, mapping)
    before = _contacts(store)
    clock.advance(3600)

    second = _write_csv(tmp_path / "v2.csv", [_lead("p1"), _lead("p2", Country="Select"), _lead("p3")])
    report = import_csv(store, second, mapping)

    assert (report.created, report.updated, len(report.skipped)) == (1, 2, 0)
    after = _contacts(store)
    assert store.count("contacts") == 3
    assert after["p1"]["_id"] == before["p1"]["_id"] and after["p2"]["_id"] == before["p2"]["_id"]
    assert "country" not in after["p2"]  # the cell became "no answer": the property is cleared
    now_ms = int(clock() * 1000)
    assert {c["_modified"] for c in after.values()} == {now_ms} == {report.modified_ms}
    assert all(b["_modified"] < now_ms for b in before.values())


def test_importing_the_same_file_twice_changes_no_property_value(store, clock, tmp_path, mapping):
    path = _write_csv(tmp_path / "leads.csv", [_lead(f"p{i}", Converted=str(i % 2)) for i in range(5)])
    import_csv(store, path, mapping)
    first = {k: {p: v for p, v in c.items() if p != "_modified"} for k, c in _contacts(store).items()}
    clock.advance(60)

    again = import_csv(store, path, mapping)

    second = {k: {p: v for p, v in c.items() if p != "_modified"} for k, c in _contacts(store).items()}
    assert (again.created, again.updated) == (0, 5)
    assert second == first


def test_bad_rows_are_skipped_with_reasons_and_the_rest_is_imported(store, tmp_path, mapping):
    path = tmp_path / "bad.csv"
    good = [_lead("ok-1"), _lead("ok-2")]
    _write_csv(path, [
        good[0],
        _lead("", Country="India"),                       # row 2: no id
        _lead("Select"),                                  # row 3: the id is a missing marker
        _lead("ok-1"),                                    # row 4: same id as row 1
        _lead("bad-num", **{"Page Views Per Visit": "lots"}),  # row 5: product of a non-number
        _lead("bad-flag", **{"Do Not Email": "Maybe"}),   # row 6: not in the value map, no default
        _lead("bad-visits", TotalVisits="many"),          # row 7: not a number
        good[1],                                          # row 8
    ])
    with path.open("a", encoding="utf-8") as f:
        f.write("short-row,1,API\n")                      # row 9: too few fields

    report = import_csv(store, path, mapping)

    assert report.rows == 9 and report.created == 2 and len(report.skipped) == 7
    by_row = {s.row: s for s in report.skipped}
    assert {r: s.reason for r, s in by_row.items()} == {
        2: "missing_id", 3: "missing_id", 4: "duplicate_id", 5: "invalid_value", 6: "invalid_value",
        7: "invalid_value", 9: "malformed_row"}
    assert "row 1" in by_row[4].message
    assert "Page Views Per Visit" in by_row[5].message and "'lots'" in by_row[5].message
    assert "Do Not Email" in by_row[6].message and "'Maybe'" in by_row[6].message
    assert "TotalVisits" in by_row[7].message
    assert "3 fields" in by_row[9].message
    assert set(_contacts(store)) == {"ok-1", "ok-2"}
    summary = "\n".join(report.lines())
    assert "created 2, updated 0, skipped 7" in summary and "missing_id" in summary


def test_values_the_sandbox_refuses_are_skipped_with_its_reason(store, tmp_path, mapping):
    config = parse_import_config(_config(properties={
        "hs_analytics_num_visits": {"column": "TotalVisits"},  # passed through as text: the sandbox checks it
        "country": {"column": "Country"}}))
    path = _write_csv(tmp_path / "leads.csv", [_lead("p1"), _lead("p2", TotalVisits="many"), _lead("p3")])

    report = import_csv(store, path, mapping, config)

    assert report.created == 2
    (skip,) = report.skipped
    assert (skip.row, skip.record_id, skip.reason) == (2, "p2", "rejected")
    assert "hs_analytics_num_visits" in skip.message and "many" in skip.message
    assert store.count("contacts") == 2


def test_a_cell_too_big_for_csv_is_one_skipped_row(store, tmp_path, mapping):
    path = _write_csv(tmp_path / "big.csv", [_lead("p1"), _lead("p2", Country="x" * 2_000_000), _lead("p3")])

    report = import_csv(store, path, mapping)

    assert report.created == 2
    assert [s.reason for s in report.skipped] == ["malformed_row"]
    assert set(_contacts(store)) == {"p1", "p3"}


def test_import_into_an_empty_db_marks_it_as_holding_a_world(store, tmp_path, mapping):
    from leadflow.sandbox.serving import prepare_store

    path = _write_csv(tmp_path / "leads.csv", [_lead("p1")])
    report = import_csv(store, path, mapping)
    store.close()

    reopened, seeded = prepare_store(store.path, contacts=50, seed=1)
    try:
        assert report.world_created and seeded is None  # serve would not add synthetic contacts
        assert reopened.count("contacts") == 1
        assert json.loads(reopened.get_meta("world"))["imported_from"] == "leads.csv"
    finally:
        reopened.close()


def test_import_into_a_seeded_world_keeps_its_contacts(store, tmp_path, add_contacts, mapping):
    store.set_meta("world", json.dumps({"seed": 3, "contacts": 1, "companies": 1, "anchor_ms": 0}))
    add_contacts([{"email": "jane@acme.com", "firstname": "Jane"}])
    path = _write_csv(tmp_path / "leads.csv", [_lead("p1")])

    report = import_csv(store, path, mapping)

    assert not report.world_created and json.loads(store.get_meta("world"))["seed"] == 3
    assert store.count("contacts") == 2
    assert store.get_rows_by_unique("contacts", ["jane@acme.com"])["jane@acme.com"].props["firstname"] == "Jane"


def test_first_rows_of_the_real_x_education_file_import_cleanly(store, tmp_path, mapping, x_education_csv):
    with x_education_csv.open(encoding="utf-8") as f:
        head = list(itertools.islice(csv.DictReader(f), 200))
    path = _write_csv(tmp_path / "head.csv", head, columns=list(head[0]))

    report = import_csv(store, path, mapping)

    assert (report.rows, report.created, report.skipped) == (200, 200, [])
    contacts = _contacts(store)
    assert len(contacts) == 200
    for row in head:
        c = contacts[row["Prospect ID"]]
        assert c["lifecyclestage"] == ("customer" if row["Converted"] == "1" else "lead")
        assert c["hs_email_optout"] is (row["Do Not Email"] == "Yes")
        if row["TotalVisits"] and row["Page Views Per Visit"]:
            assert c["hs_analytics_num_page_views"] == round(float(row["TotalVisits"])
                                                             * float(row["Page Views Per Visit"]))
        job = row["What is your current occupation"]
        assert c.get("jobtitle") == (job if job not in ("", "Select") else None)
    assert not any(v == "Select" for c in contacts.values() for v in c.values())
    assert len({c["email"] for c in contacts.values()}) == 200


def test_limit_imports_only_the_first_rows(store, tmp_path, mapping):
    path = _write_csv(tmp_path / "leads.csv", [_lead(f"p{i}") for i in range(10)])

    report = import_csv(store, path, mapping, limit=4)

    assert (report.rows, report.created) == (4, 4) and set(_contacts(store)) == {"p0", "p1", "p2", "p3"}


def test_id_slug_makes_email_safe_ids():
    assert id_slug("  7927B2DF-8bba_4d29 ") == "7927b2df-8bba-4d29"
    assert id_slug("a--b") == "a-b"
    assert id_slug("***") == ""


# --- config validation ----------------------------------------------------------------------------------
def _config(**changes) -> dict:
    base = {"name": "t", "email": "p-{id}@leads.example.com",
            "properties": {"country": {"column": "Country"}}}
    base.update(changes)
    return base


@pytest.mark.parametrize(("data", "key"), [
    (_config(email="p@leads.example.com"), "email:"),
    (_config(email="p-{id}@leads.invalid"), "email:"),
    (_config(properties={"country": {"column": "Country", "template": "{Country}"}}), "properties.country:"),
    (_config(properties={"country": {"op": "product", "column": "Country"}}), "properties.country:"),
    (_config(properties={"email": {"column": "Country"}}), "properties.email:"),
    (_config(properties={"lastmodifieddate": {"column": "Country"}}), "properties.lastmodifieddate:"),
    (_config(properties={"x": {"column": "C", "values": {"Yes": "1", " yes": "2"}}}), "properties.x.values:"),
    (_config(properties={"x": {"column": "C", "colour": "red"}}), "properties.x.colour:"),
    (_config(custom_properties={"leadflow_score": {"label": "no"}}), "custom_properties.leadflow_score:"),
    (_config(properties={}), "properties:"),
])
def test_invalid_contacts_config_names_the_key(data, key):
    with pytest.raises(ImportConfigError) as err:
        parse_import_config(data, "cfg.yaml")
    assert f"cfg.yaml: {key}" in str(err.value) or f"; {key}" in str(err.value)


@pytest.mark.parametrize(("data", "key"), [
    (_config(properties={"favourite_colour": {"column": "Country"}}), "properties.favourite_colour:"),
    (_config(properties={"lifecyclestage": {"column": "Converted", "values": {"1": "client"}}}),
     "properties.lifecyclestage.values.1:"),
    (_config(properties={"lifecyclestage": {"column": "Converted", "default": "prospect"}}),
     "properties.lifecyclestage.default:"),
    (_config(external_id_property="crm_id"), "external_id_property:"),
])
def test_config_checked_against_the_sandbox_schema_names_the_key_and_writes_nothing(store, tmp_path, mapping,
                                                                                   data, key):
    path = _write_csv(tmp_path / "leads.csv", [_lead("p1")])
    with pytest.raises(ImportConfigError, match=key.replace(".", r"\.")):
        import_csv(store, path, mapping, parse_import_config(data))
    assert store.count("contacts") == 0 and not store.has_world()


def test_column_missing_from_the_file_names_the_config_key(store, tmp_path, mapping):
    cols = [c for c in COLUMNS if c != "Do Not Email"]
    path = _write_csv(tmp_path / "leads.csv", [{k: v for k, v in _lead("p1").items() if k in cols}], columns=cols)
    with pytest.raises(ImportConfigError, match=r"properties\.hs_email_optout: column\(s\) 'Do Not Email'"):
        import_csv(store, path, mapping)
    assert store.count("contacts") == 0


def test_config_made_for_another_mapping_is_refused(store, tmp_path):
    path = _write_csv(tmp_path / "leads.csv", [_lead("p1")])
    with pytest.raises(ImportConfigError, match="mapping: .*'x_education'"):
        import_csv(store, path, load_mapping("warehouse_leads"), "x_education_contacts")


def test_shipped_contacts_config_is_valid_and_uses_existing_or_declared_properties(store):
    config = load_import_config("x_education_contacts")
    assert config.mapping == "x_education"
    known = set(store.properties("contacts")) | set(config.custom_properties)
    assert set(config.properties) <= known
    assert {"hs_analytics_num_page_views", "hs_analytics_num_visits", "hs_email_optout", "country", "jobtitle",
            "lifecyclestage"} <= set(config.properties)


# --- the CLI --------------------------------------------------------------------------------------------
def test_cli_import_prints_counts_and_reimport_updates(tmp_path, capsys):
    path = _write_csv(tmp_path / "leads.csv", [_lead("p1"), _lead("p2"), _lead("")])
    db = tmp_path / "crm.db"
    argv = ["sandbox", "import", "--csv", str(path), "--mapping", "x_education", "--db", str(db)]

    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert cli.main(argv) == 0
    second = capsys.readouterr().out

    assert "created 2, updated 0, skipped 1" in first and "new imported world" in first
    assert "missing_id" in first and "row 3" in first
    assert "created 0, updated 2, skipped 1" in second


def test_cli_import_with_a_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    path = _write_csv(tmp_path / "leads.csv", [_lead("p1")])
    cfg = tmp_path / "contacts.yaml"
    cfg.write_text("name: t\nemail: 'x-{id}@leads.example.com'\nproperties:\n  nosuch: {column: Country}\n")

    rc = cli.main(["sandbox", "import", "--csv", str(path), "--mapping", "x_education", "--db",
                   str(tmp_path / "crm.db"), "--contacts-config", str(cfg)])

    assert rc == 2
    assert "properties.nosuch:" in capsys.readouterr().err


def test_cli_import_where_every_row_is_bad_exits_1(tmp_path, capsys):
    path = _write_csv(tmp_path / "leads.csv", [_lead(""), _lead("Select")])
    rc = cli.main(["sandbox", "import", "--csv", str(path), "--mapping", "x_education", "--db",
                   str(tmp_path / "crm.db")])
    assert rc == 1
    assert "skipped 2" in capsys.readouterr().out
