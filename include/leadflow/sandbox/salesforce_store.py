"""SQLite state of the Salesforce part of the sandbox: table `sf_lead` in the same db file as the
HubSpot objects, seeded from the same world (`generate_world`), so one person exists in both CRMs,
and `sf_contact`, the Contacts converted leads became (a seeded converted lead has its Contact).

Columns that SOQL filters and sorts on are real, indexed columns (`id`, `modstamp_ms`,
`created_ms`, `is_deleted`, `is_converted`); every other field lives typed in the `fields` JSON
document (numbers, booleans, epoch ms). Own connection, guarded by a lock (WAL lets it share the
file with the HubSpot store).

`sf_lead_history` holds LeadHistory (tracked field changes, values in wire form) and `sf_writes`
every applied field change with the user who made it (the sandbox's own log for tests). A write
saves records, history and log in one transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from leadflow.sandbox.salesforce_schema import (
    ACCOUNT_PREFIX,
    COLUMN_FIELDS,
    CONTACT,
    CONTACT_FROM_LEAD,
    CONTACT_PREFIX,
    HISTORY_PREFIX,
    LEAD_SOURCES,
    format_date,
    lead_id,
    record_id,
)
from leadflow.sandbox.salesforce_users import IMPORT_USER_ID
from leadflow.sandbox.sqlite_file import SqliteFile
from leadflow.sandbox.world import WorldConfig, generate_world

log = logging.getLogger(__name__)

HUBSPOT_STAGE_TO_SF = {
    "subscriber": "Subscriber", "lead": "Lead", "marketingqualifiedlead": "MQL", "salesqualifiedlead": "SQL",
    "opportunity": "Opportunity", "customer": "Customer", "evangelist": "Evangelist", "other": "Other",
}
HUBSPOT_STATUS_TO_SF = {
    "NEW": "Open - Not Contacted", "OPEN": "Open", "ATTEMPTED_TO_CONTACT": "Attempted to Contact",
    "CONNECTED": "Working - Contacted", "IN_PROGRESS": "In Progress", "BAD_TIMING": "Nurturing",
    "OPEN_DEAL": "Open Deal", "UNQUALIFIED": "Closed - Not Converted",
}
RATING_BY_STAGE = {"MQL": "Warm", "SQL": "Hot", "Opportunity": "Hot", "Customer": "Hot", "Lead": "Cold",
                   "Subscriber": "Cold"}
# HubSpot contact property -> Lead field, for values copied as they are
_DIRECT = {
    "firstname": "FirstName", "lastname": "LastName", "email": "Email", "jobtitle": "Title", "phone": "Phone",
    "website": "Website", "company": "Company", "message": "Description", "hs_email_optout": "HasOptedOutOfEmail",
    "budget_range": "Budget_Range__c", "purchase_timeframe": "Purchase_Timeframe__c", "pain_point": "Pain_Point__c",
    "hs_analytics_num_page_views": "Page_Views__c", "hs_analytics_num_visits": "Visits__c",
    "pricing_page_views": "Pricing_Page_Views__c", "hs_email_click": "Email_Clicks__c",
    "content_downloads": "Content_Downloads__c", "num_conversion_events": "Form_Submissions__c",
    "demo_requested_at": "Demo_Requested_At__c", "trial_started_at": "Trial_Started_At__c",
    "webinar_attended_at": "Webinar_Attended_At__c", "hs_analytics_last_timestamp": "Last_Activity_At__c",
}


class SalesforceStore(SqliteFile):
    """`sf_lead`, `sf_contact` and their history and log; meta table `sf_meta` (`close`, `now_ms`,
    `get_meta`, `set_meta`, `has_world`: `SqliteFile`)."""

    _META_TABLE = "sf_meta"

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS sf_lead (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, "
                "modstamp_ms INTEGER NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0, "
                "is_converted INTEGER NOT NULL DEFAULT 0, fields TEXT NOT NULL DEFAULT '{}')")
            self._conn.execute("CREATE INDEX IF NOT EXISTS ix_sf_lead_modstamp ON sf_lead (modstamp_ms, id)")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS sf_contact (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, "
                "modstamp_ms INTEGER NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0, fields TEXT NOT NULL DEFAULT '{}')")
            self._conn.execute("CREATE INDEX IF NOT EXISTS ix_sf_contact_modstamp ON sf_contact (modstamp_ms, id)")
            self._conn.execute("CREATE TABLE IF NOT EXISTS sf_meta (key TEXT PRIMARY KEY, value TEXT)")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS sf_writes (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, "
                "record_id TEXT NOT NULL, field TEXT NOT NULL, old_value TEXT, new_value TEXT, user_id TEXT)")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS sf_lead_history (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                "lead_id TEXT NOT NULL, field TEXT NOT NULL, old_value TEXT, new_value TEXT, "
                "created_by TEXT NOT NULL, created_ms INTEGER NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0)")
            self._conn.execute("CREATE INDEX IF NOT EXISTS ix_sf_lead_history_lead "
                               "ON sf_lead_history (lead_id, created_ms)")
            self._upgrade()

    def _upgrade(self) -> None:
        """Bring a db file written before users existed up to date: `sf_writes` gains `user_id`,
        and leads without `CreatedById` get the import user (they can only come from seeding)."""
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(sf_writes)")}
        if "user_id" not in columns:
            self._conn.execute("ALTER TABLE sf_writes ADD COLUMN user_id TEXT")
        cur = self._conn.execute(
            "UPDATE sf_lead SET fields = json_set(fields, '$.CreatedById', ?, '$.LastModifiedById', "
            "coalesce(json_extract(fields, '$.LastModifiedById'), ?)) "
            "WHERE json_extract(fields, '$.CreatedById') IS NULL", (IMPORT_USER_ID, IMPORT_USER_ID))
        if cur.rowcount:
            log.info("gave %d Salesforce leads of an older db file the import user as creator", cur.rowcount)
        self._add_missing_contacts()

    def _add_missing_contacts(self) -> None:
        """Give every converted lead without one its Contact (seeding, a db file older than
        Contacts), created and last changed when the lead was."""
        rows = self._conn.execute(
            f"SELECT {self._COLS} FROM sf_lead WHERE is_converted = 1 AND NOT EXISTS (SELECT 1 FROM sf_contact "
            "WHERE sf_contact.id = json_extract(sf_lead.fields, '$.ConvertedContactId'))").fetchall()
        contacts = [contact_from_lead(self._record(r)) for r in rows]
        contacts = [c for c in contacts if c is not None]
        if contacts:
            self.insert_contacts(contacts)
            log.info("created the Contacts of %d converted Salesforce leads", len(contacts))

    def meta_json(self, key: str) -> Any:
        raw = self.get_meta(key)
        return None if raw is None else json.loads(raw)

    def count(self, *, deleted: bool = False) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM sf_lead WHERE is_deleted = ?",
                                          (int(deleted),)).fetchone()[0])

    # --- reading ----------------------------------------------------------------------------------
    @staticmethod
    def _record(row: Sequence[Any]) -> dict[str, Any]:
        rec = json.loads(row[5])
        rec.update({"Id": row[0], "CreatedDate": row[1], "SystemModstamp": row[2], "LastModifiedDate": row[2],
                    "IsDeleted": bool(row[3]), "IsConverted": bool(row[4])})
        return rec

    _COLS = "id, created_ms, modstamp_ms, is_deleted, is_converted, fields"

    def select_ids(self, where_sql: str, params: Sequence[Any], order_sql: str, limit: int | None,
                   offset: int = 0, *, table: str = "sf_lead") -> list[str]:
        """Ids of `table` (sf_lead, sf_lead_history or sf_contact) matching compiled SOQL."""
        if table not in ("sf_lead", "sf_lead_history", CONTACT.table):
            raise ValueError(f"unknown table {table!r}")
        sql = f"SELECT id FROM {table} WHERE {where_sql or '1=1'}"
        if order_sql:
            sql += f" ORDER BY {order_sql}"
        sql += " LIMIT ? OFFSET ?"
        with self._lock:
            return [r[0] for r in self._conn.execute(sql, [*params, -1 if limit is None else limit, offset])]

    def _rows_by_id(self, columns: str, table: str, ids: Iterable[str]) -> list[Sequence[Any]]:
        """Rows of `table` whose id is in `ids` (unique), 500 ids per statement."""
        unique = list(dict.fromkeys(ids))
        rows: list[Sequence[Any]] = []
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows.extend(self._conn.execute(f"SELECT {columns} FROM {table} WHERE id IN ({marks})", chunk))
        return rows

    def get(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {r[0]: self._record(r) for r in self._rows_by_id(self._COLS, "sf_lead", ids)}

    def get_contacts(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {r[0]: self._contact(r) for r in self._rows_by_id(self._CONTACT_COLS, CONTACT.table, ids)}

    _CONTACT_COLS = "id, created_ms, modstamp_ms, is_deleted, fields"

    @staticmethod
    def _contact(row: Sequence[Any]) -> dict[str, Any]:
        rec = json.loads(row[4])
        rec.update({"Id": row[0], "CreatedDate": row[1], "SystemModstamp": row[2], "LastModifiedDate": row[2],
                    "IsDeleted": bool(row[3])})
        return rec

    def get_history(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """LeadHistory rows by id, as records (OldValue/NewValue already in wire form)."""
        rows = self._rows_by_id("id, is_deleted, lead_id, created_by, created_ms, field, old_value, new_value",
                                "sf_lead_history", ids)
        return {r[0]: {"Id": r[0], "IsDeleted": bool(r[1]), "LeadId": r[2], "CreatedById": r[3], "CreatedDate": r[4],
                       "Field": r[5], "OldValue": None if r[6] is None else json.loads(r[6]),
                       "NewValue": None if r[7] is None else json.loads(r[7])} for r in rows}

    # --- writing ----------------------------------------------------------------------------------
    def save(self, records: Sequence[dict[str, Any]], at_ms: int,
             changes: Sequence[tuple[str, str, Any, Any]] = (), *, user_id: str | None = None,
             history: Sequence[tuple[str, str, Any, Any]] = (), drop_history_of: Sequence[str] = (),
             new_contacts: Sequence[dict[str, Any]] = ()) -> None:
        """Write full records back (Leads, and Contacts by their id prefix; SystemModstamp = at_ms)
        in one transaction with: the Contacts `new_contacts` created (a conversion), the field
        `changes` (record id, field, old, new; stored values) logged under `user_id`, the
        LeadHistory rows `history` (lead id, field, old, new; wire values) created by `user_id`,
        and the history of the leads `drop_history_of` (deleted or merged away) marked deleted."""
        if history and user_id is None:
            raise ValueError("history rows need the user who made the change")
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT INTO sf_writes (at_ms, record_id, field, old_value, new_value, user_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(at_ms, rid, f, None if old is None else json.dumps(old), None if new is None else json.dumps(new),
                      user_id) for rid, f, old, new in changes])
                if history:
                    seq = int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM sf_lead_history").fetchone()[0])
                    self._conn.executemany(
                        "INSERT INTO sf_lead_history (seq, id, lead_id, field, old_value, new_value, created_by, "
                        "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(seq + n, record_id(HISTORY_PREFIX, seq + n), lid, f,
                          None if old is None else json.dumps(old), None if new is None else json.dumps(new),
                          user_id, at_ms) for n, (lid, f, old, new) in enumerate(history, start=1)])
                self._conn.executemany("UPDATE sf_lead_history SET is_deleted = 1 WHERE lead_id = ?",
                                       [(i,) for i in drop_history_of])
                contacts = [r for r in records if is_contact(r["Id"])]
                self._conn.executemany(
                    "UPDATE sf_lead SET modstamp_ms = ?, is_deleted = ?, is_converted = ?, fields = ? WHERE id = ?",
                    [(at_ms, int(r.get("IsDeleted") or False), int(r.get("IsConverted") or False),
                      json.dumps({k: v for k, v in r.items() if k not in COLUMN_FIELDS}, separators=(",", ":")),
                      r["Id"]) for r in records if not is_contact(r["Id"])])
                self._conn.executemany(
                    f"UPDATE {CONTACT.table} SET modstamp_ms = ?, is_deleted = ?, fields = ? WHERE id = ?",
                    [(at_ms, int(r.get("IsDeleted") or False), _contact_document(r), r["Id"]) for r in contacts])
                self._conn.executemany(f"INSERT INTO {CONTACT.table} VALUES (?, ?, ?, ?, ?)",
                                       [(c["Id"], at_ms, at_ms, 0, _contact_document(c)) for c in new_contacts])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def writes(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """Applied field changes in order: seq, at_ms, record_id, field, old, new (stored values),
        user_id (who made it; None in a db file older than users)."""
        with self._lock:
            rows = self._conn.execute("SELECT seq, at_ms, record_id, field, old_value, new_value, user_id "
                                      "FROM sf_writes WHERE seq > ? ORDER BY seq", (since_seq,)).fetchall()
        return [{"seq": r[0], "at_ms": r[1], "record_id": r[2], "field": r[3],
                 "old": None if r[4] is None else json.loads(r[4]), "new": None if r[5] is None else json.loads(r[5]),
                 "user_id": r[6]}
                for r in rows]

    def set_modstamp(self, ids: Sequence[str], modstamp_ms: int) -> None:
        with self._lock:
            self._conn.executemany("UPDATE sf_lead SET modstamp_ms = ? WHERE id = ?", [(modstamp_ms, i) for i in ids])

    def insert_contacts(self, contacts: Sequence[dict[str, Any]]) -> None:
        """Insert Contacts as they are (CreatedDate and SystemModstamp given, epoch ms)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    f"INSERT INTO {CONTACT.table} VALUES (?, ?, ?, 0, ?)",
                    [(c["Id"], int(c["CreatedDate"]), int(c["SystemModstamp"]), _contact_document(c))
                     for c in contacts])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def insert(self, rows: Iterable[tuple[str, int, int, int, int, str]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("INSERT INTO sf_lead VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # --- seeding ----------------------------------------------------------------------------------
    def seed_from_world(self, world_meta: dict[str, Any]) -> int:
        """Load the Leads of the world described by the HubSpot store's `world` meta (same seed,
        size and anchor: the same people). Returns the number of leads."""
        config = WorldConfig(seed=int(world_meta["seed"]), contacts=int(world_meta["contacts"]),
                             anchor_ms=int(world_meta["anchor_ms"]),
                             shared_timestamp_every=int(world_meta.get("shared_timestamp_every", 0)))
        started = time.perf_counter()
        world = generate_world(config)
        rows = list(world_to_lead_rows(world.contacts, world.companies))
        self.insert(rows)
        with self._lock:
            self._add_missing_contacts()
        self.set_meta("world", json.dumps(world_meta))
        log.info("seeded %d Salesforce leads in %.2fs", len(rows), time.perf_counter() - started)
        return len(rows)


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


_OWN_ACCOUNT_BASE = 10**12


def converted_ids(lead_number: int, company_number: Any = None) -> dict[str, str]:
    """The Contact and Account a lead became on conversion: numbered after the lead (each lead
    converts once) and, for the account, after the world's company when the lead has one (a
    lead without one gets its own account, numbered apart from the companies')."""
    account = int(company_number) if company_number is not None else _OWN_ACCOUNT_BASE + lead_number
    return {"ConvertedContactId": record_id(CONTACT_PREFIX, lead_number),
            "ConvertedAccountId": record_id(ACCOUNT_PREFIX, account)}


def is_contact(record_id: str) -> bool:
    return str(record_id).startswith(CONTACT_PREFIX)


def _contact_document(contact: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in contact.items() if k not in CONTACT.columns}, separators=(",", ":"))


def contact_from_lead(lead: dict[str, Any]) -> dict[str, Any] | None:
    """The Contact a converted lead became (its `ConvertedContactId`), as a conversion creates it:
    the mapped fields copied, the lead's account, created and last changed by whoever last changed
    the lead, at the lead's SystemModstamp. None for a lead that was not converted."""
    contact_id = lead.get("ConvertedContactId")
    if not lead.get("IsConverted") or not contact_id:
        return None
    out: dict[str, Any] = {name: lead[source] for source, name in CONTACT_FROM_LEAD.items()
                           if lead.get(source) is not None}
    user = lead.get("LastModifiedById") or IMPORT_USER_ID
    out.update({"Id": contact_id, "AccountId": lead.get("ConvertedAccountId"), "IsDeleted": False,
                "CreatedById": user, "LastModifiedById": user, "CreatedDate": lead["SystemModstamp"],
                "SystemModstamp": lead["SystemModstamp"], "LastModifiedDate": lead["SystemModstamp"]})
    return out


def world_to_lead_rows(contacts: pd.DataFrame, companies: pd.DataFrame) -> Iterable[tuple[str, int, int, int, int, str]]:
    """The world's contacts as Lead rows. A Lead has no company object: the firmographics of the
    contact's company (as the CRM holds them, blanks included) are copied onto the lead, the way
    an enrichment tool fills a Salesforce org."""
    comp = companies.set_index("company_id")
    comp_cols = {c: comp[c].to_dict() for c in ("industry", "numberofemployees", "annualrevenue", "country",
                                                "web_technologies", "domain")}
    records = contacts.to_dict("records")
    for rec in records:
        fields: dict[str, Any] = {}
        for prop, name in _DIRECT.items():
            value = _clean(rec.get(prop))
            if value is not None:
                fields[name] = value
        cid = _clean(rec.get("company_id"))
        has_company = cid is not None

        def company(col: str) -> Any:
            return _clean(comp_cols[col].get(cid)) if has_company else None

        for name, own, col in (("Industry", rec.get("industry"), "industry"), ("Country", rec.get("country"), "country")):
            value = _clean(own)
            if value is None:
                value = company(col)
            if value is not None:
                fields[name] = value
        for name, col in (("NumberOfEmployees", "numberofemployees"), ("AnnualRevenue", "annualrevenue"),
                          ("Technologies__c", "web_technologies"), ("Company_Domain__c", "domain")):
            value = company(col)
            if value is not None:
                fields[name] = value
        stage = HUBSPOT_STAGE_TO_SF.get(str(rec.get("lifecyclestage")))
        converted = stage == "Customer"
        number = int(rec["id"])
        if stage:
            fields["Lifecycle_Stage__c"] = stage
            if stage in RATING_BY_STAGE:
                fields["Rating"] = RATING_BY_STAGE[stage]
        status = HUBSPOT_STATUS_TO_SF.get(str(rec.get("hs_lead_status")))
        if converted:
            status = "Closed - Converted"
        if status:
            fields["Status"] = status
        fields["LeadSource"] = LEAD_SOURCES[number % len(LEAD_SOURCES)]
        # Seeded leads came in through a data import: created by, and last changed by, that user.
        fields["CreatedById"] = fields["LastModifiedById"] = IMPORT_USER_ID
        if converted:
            fields.update(converted_ids(number, cid))
            fields["ConvertedDate"] = format_date(int(rec["modified_ms"]))
        yield (lead_id(number), int(rec["created_ms"]), int(rec["modified_ms"]), 0, int(converted),
               json.dumps(fields, separators=(",", ":")))
