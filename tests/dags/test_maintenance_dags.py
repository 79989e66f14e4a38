"""The maintenance DAGs (`leadflow_train`, `leadflow_rollback`) are wired as documented, and
`leadflow.maintenance` undoes a run's writes through a connector on a real (SQLite) warehouse."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from teardown_checks import assert_alerts_once_from_its_teardown

from leadflow.crm.base import RecordResult
from leadflow.warehouse import repo

DAGS = Path(__file__).resolve().parents[2] / "dags"
CRMS = ("hubspot", "salesforce")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS / "leadflow_maintenance.py"))


@pytest.fixture(scope="module")
def train_dag(dagbag):
    assert dagbag.import_errors == {}
    return dagbag.dags["leadflow_train"]


@pytest.fixture(scope="module")
def rollback_dag(dagbag):
    assert dagbag.import_errors == {}
    return dagbag.dags["leadflow_rollback"]


class FakeConnector:
    """A CRM in memory: records what was written, answers reads from it."""

    name = "hubspot"
    max_batch_size = 2

    def __init__(self):
        self.crm: dict[str, dict] = {}
        self.calls: list[list[str]] = []
        self.closed = False

    def pull(self, since):
        return iter(())

    def ensure_schema(self):
        pass

    def push(self, updates):
        self.calls.append([u.record_id for u in updates])
        for u in updates:
            self.crm.setdefault(u.record_id, {}).update(u.values)
        return [RecordResult(u.record_id, "confirmed") for u in updates]

    def read(self, ids):
        return [{"record_id": i, **self.crm.get(i, {})} for i in ids]

    def observe(self, ids):
        """Shared fields as leadflow left them (nobody else writes this CRM)."""
        from leadflow.ownership import Observed, Writer

        return {i: {f: Observed(self.crm[i].get(f), writer=Writer.LEADFLOW) for f in ("lifecycle_stage", "lead_status")}
                for i in ids if i in self.crm}

    def close(self):
        self.closed = True


def _pushed_run(engine, fake, run_id="scheduled__r1"):
    """Land leads a, b, c and have run `run_id` change their scores 10/20/30 -> 50 in the CRM."""
    from leadflow.push.lease import release
    from leadflow.push.writer import push_changes

    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", [{"record_id": i} for i in "abc"], [], [])
    changes = pd.DataFrame({"record_id": list("abc"), "field": "score", "before": ["10", "20", "30"],
                            "after": "50"})
    outcome = push_changes(engine, fake, "hubspot", run_id, changes, "v1")
    assert outcome.pushed == 3
    release(engine, "hubspot", run_id)  # the run's report step frees the push lease


# --- leadflow_train -------------------------------------------------------------------------------
def test_train_dag_has_one_training_task_per_configured_crm(train_dag):
    assert sorted(train_dag.task_ids) == ["close_run", *(f"train_{crm}" for crm in CRMS)]
    for crm in CRMS:
        assert list(train_dag.get_task(f"train_{crm}").op_args) == [crm]


def test_train_dag_runs_weekly_on_sunday_or_when_any_crm_publishes_scores(train_dag):
    from airflow.sdk import AssetAny, AssetOrTimeSchedule

    schedule = train_dag.timetable
    assert isinstance(schedule, AssetOrTimeSchedule)
    assert schedule.timetable.expression == "0 3 * * 0"
    assert str(schedule.timetable.timezone) == "UTC"
    assert isinstance(schedule.asset_condition, AssetAny)  # any CRM's scores, not all of them
    uris = sorted(asset.uri for asset in schedule.asset_condition.objects)
    assert uris == [f"leadflow://{crm}/scores" for crm in CRMS]


def test_train_dag_consumes_the_assets_the_crm_dags_emit():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    emitted = {outlet.uri for dag_id in (f"leadflow_{c}" for c in CRMS)
               for outlet in bag.dags[dag_id].get_task("report").outlets}
    consumed = {asset.uri for asset in bag.dags["leadflow_train"].timetable.asset_condition.objects}
    assert consumed == emitted


def test_train_dag_tags_and_conventions(train_dag):
    assert {"leadflow", "maintenance"} <= set(train_dag.tags)
    assert train_dag.catchup is False and train_dag.max_active_runs == 1
    assert all(t.retries >= 2 for t in train_dag.tasks)


@pytest.mark.parametrize("dag_id", ["leadflow_train", "leadflow_rollback"])
def test_a_maintenance_run_alerts_once_from_its_teardown_and_failing_tasks_only_keep_their_error(dagbag, dag_id):
    """As in the CRM DAGs: the teardown sends the run's one alert; no DAG-level callback and no
    task callback alerts too."""
    from leadflow.dag_support import keep_task_error

    assert_alerts_once_from_its_teardown(dagbag.dags[dag_id], keep_task_error)


# --- leadflow_rollback ----------------------------------------------------------------------------
def test_rollback_dag_is_manual_only_with_one_task_per_crm_in_its_pool(rollback_dag):
    assert rollback_dag.timetable.can_be_scheduled is False
    assert sorted(rollback_dag.task_ids) == ["close_run", *(f"rollback_{crm}" for crm in CRMS)]
    assert {"leadflow", "maintenance"} <= set(rollback_dag.tags)
    for crm in CRMS:
        task = rollback_dag.get_task(f"rollback_{crm}")
        assert task.retries >= 2
        assert task.pool == f"leadflow_{crm}"


def test_the_trigger_crm_runs_its_rollback_task_and_skips_the_others(rollback_dag):
    from airflow.sdk.exceptions import AirflowSkipException

    context = {"params": {"crm": "salesforce", "run_id": "manual__x", "dry_run": True}}
    rollback_dag.get_task("rollback_salesforce")._pre_execute_hook(context)  # what the task runner calls
    with pytest.raises(AirflowSkipException, match="another CRM than hubspot"):
        rollback_dag.get_task("rollback_hubspot")._pre_execute_hook(context)


def test_rollback_params_have_titles_descriptions_and_dry_run_on_by_default(rollback_dag):
    for name in ("crm", "run_id", "dry_run"):
        param = rollback_dag.params.get_param(name)
        assert param.schema.get("title") and param.description, name
    assert rollback_dag.params.get_param("crm").schema["enum"] == list(CRMS)
    assert rollback_dag.params.get_param("dry_run").value is True


def _validated(dag, **values):
    """What a trigger request does with the submitted values: merge them over the DAG's Params
    and validate the whole set."""
    import copy

    params = copy.deepcopy(dag.params)
    params.update(values)
    return params.validate()


def test_rollback_params_reject_a_missing_or_empty_run_id_and_an_unknown_crm(rollback_dag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _validated(rollback_dag)
    with pytest.raises(ParamValidationError):
        _validated(rollback_dag, run_id="")
    with pytest.raises(ParamValidationError):
        _validated(rollback_dag, run_id="r1", crm="pipedrive")
    ok = _validated(rollback_dag, run_id="scheduled__r1", crm="salesforce")
    assert ok == {"crm": "salesforce", "run_id": "scheduled__r1", "dry_run": True}


def test_rollback_task_passes_params_and_the_airflow_connection_to_the_rollback(rollback_dag, monkeypatch, tmp_path):
    """The task's own code, with Airflow's context and connection store replaced by fakes."""
    import leadflow.airflow_adapter
    import leadflow.maintenance

    seen = {}

    def fake_run_rollback(crm, run_id, dry_run=True, connection=None):
        seen.update(crm=crm, run_id=run_id, dry_run=dry_run, connection=connection)
        return {"crm": crm, "restored": 0}

    airflow_conn = SimpleNamespace(conn_id="leadflow_salesforce", conn_type="http", host="sandbox", port=8766,
                                   schema="https", login=None, password="tok", extra_dejson={"verify": "/ca.pem"})
    asked = []
    monkeypatch.setattr(leadflow.airflow_adapter, "airflow_connection", lambda cid: asked.append(cid) or airflow_conn)
    monkeypatch.setattr(leadflow.maintenance, "run_rollback", fake_run_rollback)
    task = rollback_dag.get_task("rollback_salesforce")
    params = {"crm": "salesforce", "run_id": "manual__x", "dry_run": False}
    monkeypatch.setattr(leadflow.airflow_adapter, "current_context", lambda: {"params": params})

    assert task.python_callable(*task.op_args) == {"crm": "salesforce", "restored": 0}
    assert asked == ["leadflow_salesforce"]
    assert (seen["crm"], seen["run_id"], seen["dry_run"]) == ("salesforce", "manual__x", False)
    assert seen["connection"].base_url == "https://sandbox:8766"
    assert seen["connection"].extra == {"verify": "/ca.pem"}


# --- leadflow.maintenance -------------------------------------------------------------------------
def test_run_rollback_dry_run_reports_without_writing_to_the_crm(sqlite_warehouse):
    from leadflow.maintenance import run_rollback

    fake = FakeConnector()
    _pushed_run(sqlite_warehouse, fake)
    fake.crm["c"]["score"] = "77"  # a human changed c since
    writes_before = len(fake.calls)

    out = run_rollback("hubspot", "scheduled__r1", connection=object(), engine=sqlite_warehouse,
                       connector_factory=lambda crm, conn: fake)

    assert out["dry_run"] is True and out["crm"] == "hubspot"
    assert (out["records"], out["restored"], out["skipped_changed_since"]) == (3, 2, 1)
    assert out["skipped_record_ids"] == ["c"]
    assert len(fake.calls) == writes_before and fake.crm["a"]["score"] == "50"
    assert fake.closed


def test_run_rollback_restores_the_before_values_and_closes_the_connector(sqlite_warehouse):
    from leadflow.maintenance import run_rollback

    fake = FakeConnector()
    _pushed_run(sqlite_warehouse, fake)
    fake.crm["c"]["score"] = "77"
    made_for = []

    def factory(crm, conn):
        made_for.append((crm, conn))
        return fake

    out = run_rollback("hubspot", "scheduled__r1", dry_run=False, connection="conn", engine=sqlite_warehouse,
                       connector_factory=factory)

    assert made_for == [("hubspot", "conn")]
    assert (out["restored"], out["rejected"], out["skipped_changed_since"], out["dry_run"]) == (2, 0, 1, False)
    assert {rid: v["score"] for rid, v in fake.crm.items()} == {"a": "10", "b": "20", "c": "77"}
    leads = repo.load_leads(sqlite_warehouse, "hubspot").set_index("record_id")
    assert leads.loc["a", "crm_score"] == "10"
    assert fake.closed


def test_run_rollback_opens_the_warehouse_url_and_the_registered_connector(tmp_path, monkeypatch):
    """Without engine/factory: the URL's warehouse and `get_connector` from the env connection."""
    from leadflow.crm import registry
    from leadflow.maintenance import run_rollback
    from leadflow.warehouse.db import ensure_schema, get_engine

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    engine = get_engine(url)
    ensure_schema(engine)
    fake = FakeConnector()
    _pushed_run(engine, fake)
    engine.dispose()
    got = []
    monkeypatch.setitem(registry._FACTORIES, "hubspot", lambda conn, **kw: got.append(conn) or fake)
    monkeypatch.setenv("AIRFLOW_CONN_LEADFLOW_HUBSPOT", '{"conn_type":"http","host":"127.0.0.1","port":1,"password":"t"}')

    out = run_rollback("hubspot", "scheduled__r1", dry_run=False, warehouse_url=url)

    assert out["restored"] == 3 and fake.crm["b"]["score"] == "20"
    assert got[0].conn_id == "leadflow_hubspot" and got[0].port == 1
    assert fake.closed


def test_run_rollback_closes_the_connector_when_the_rollback_fails(sqlite_warehouse):
    from leadflow.maintenance import run_rollback

    fake = FakeConnector()
    _pushed_run(sqlite_warehouse, fake)

    def broken_read(ids):
        raise RuntimeError("CRM down")

    fake.read = broken_read
    with pytest.raises(RuntimeError, match="CRM down"):
        run_rollback("hubspot", "scheduled__r1", dry_run=False, connection="c", engine=sqlite_warehouse,
                     connector_factory=lambda crm, conn: fake)
    assert fake.closed


def test_run_rollback_of_an_unknown_run_restores_nothing(sqlite_warehouse):
    from leadflow.maintenance import run_rollback

    fake = FakeConnector()
    out = run_rollback("hubspot", "no-such-run", dry_run=False, connection="c", engine=sqlite_warehouse,
                       connector_factory=lambda crm, conn: fake)
    assert (out["records"], out["restored"], out["write_calls"]) == (0, 0, 0) and fake.calls == []


def test_run_rollback_refuses_an_empty_run_id_before_touching_the_crm(sqlite_warehouse):
    from leadflow.maintenance import run_rollback

    made = []
    with pytest.raises(ValueError, match="run_id"):
        run_rollback("hubspot", "  ", connection="c", engine=sqlite_warehouse,
                     connector_factory=lambda crm, conn: made.append(crm))
    assert made == []


def test_run_training_without_closed_history_reports_insufficient_data(sqlite_warehouse):
    from datetime import datetime, timezone

    from leadflow.maintenance import run_training

    out = run_training("hubspot", now=datetime(2026, 1, 4, 3, tzinfo=timezone.utc), run_id="scheduled__t",
                       engine=sqlite_warehouse)
    assert out["crm"] == "hubspot" and out["status"] == "insufficient_data"
    assert (out["won"], out["lost"]) == (0, 0)


def test_given_a_rollback_rejected_for_its_token_then_the_task_fails_without_retries(rollback_dag, monkeypatch):
    import leadflow.airflow_adapter
    import leadflow.maintenance
    from airflow.sdk.exceptions import AirflowFailException

    from leadflow.crm.base import CrmAuthError

    def rejected(crm, run_id, dry_run=True, connection=None):
        raise CrmAuthError("HubSpot rejected the token (401)")

    monkeypatch.setattr(leadflow.airflow_adapter, "airflow_connection", lambda cid: SimpleNamespace(
        conn_id=cid, conn_type="http", host="sandbox", port=8765, schema="http", login=None, password="x",
        extra_dejson={}))
    monkeypatch.setattr(leadflow.maintenance, "run_rollback", rejected)
    monkeypatch.setattr(leadflow.airflow_adapter, "current_context",
                        lambda: {"params": {"crm": "hubspot", "run_id": "manual__x", "dry_run": True}})
    task = rollback_dag.get_task("rollback_hubspot")

    with pytest.raises(AirflowFailException, match="CrmAuthError"):
        task.python_callable(*task.op_args)
