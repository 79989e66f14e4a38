"""Every DAG file imports cleanly, follows the project's conventions, and does no I/O at parse time."""

from __future__ import annotations

from pathlib import Path

import pytest
from teardown_checks import assert_alerts_once_from_its_teardown

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "leadflow_hubspot" in dagbag.dag_ids


def test_every_dag_has_tags_doc_retries_and_no_catchup(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id} lacks doc_md"
        assert dag.catchup is False, dag_id
        assert dag.max_active_runs == 1, dag_id
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} retries={task.retries}"


def test_crm_dag_gates_the_push_behind_enrichment_validation_and_scoring(dagbag):
    dag = dagbag.dags["leadflow_hubspot"]
    order = ["extract", "shard_list", "enrich", "validate", "validate_gate", "qualify", "accounts", "validate_scores",
             "plan_push", "push", "push_accounts", "report"]
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids


def test_trigger_params_have_titles_and_descriptions(dagbag):
    dag = dagbag.dags["leadflow_hubspot"]
    for name in ("dry_run", "full_refresh", "push", "only_record_ids", "since", "shards", "force"):
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description, name
    assert dag.params["dry_run"] is False and dag.params["shards"] == 1


def test_mapped_tasks_and_every_task_that_calls_the_crm_in_its_pool(dagbag):
    dag = dagbag.dags["leadflow_hubspot"]
    in_pool = {t.task_id for t in dag.tasks if t.pool == "leadflow_hubspot"}
    assert in_pool == {"extract", "push", "push_accounts"}
    for step in ("enrich", "validate", "qualify", "push"):  # each task loads only its shard's leads
        assert type(dag.get_task(step)).__name__.endswith("MappedOperator"), step


# Run in a fresh interpreter after Airflow's own start-up, which is not the DAG files' cost: the
# parse may import only the DAG support module, the Airflow adapter and the light env module, and any
# network or database connection fails it.
_PARSE_PROBE = """
import json, runpy, sys
import airflow.sdk, pendulum

repo, dag_files = sys.argv[1], sys.argv[2:]
before, opened = set(sys.modules), []

def refuse_io(event, args):
    if event in ("socket.connect", "sqlite3.connect"):
        raise OSError(f"{event} at parse time")
    if event == "open" and str(args[0]).startswith(repo) and not str(args[0]).endswith((".py", ".pyc")):
        opened.append(str(args[0]))

sys.addaudithook(refuse_io)
for path in dag_files:
    runpy.run_path(path)
print(json.dumps({"modules": sorted(set(sys.modules) - before), "opened": opened}))
"""
HEAVY = {"great_expectations", "sklearn", "pandas", "numpy", "requests", "sqlalchemy"}


def test_dag_modules_parse_without_io_or_heavy_imports():
    import json
    import subprocess
    import sys

    dag_files = [str(p) for p in sorted(DAGS.glob("*.py"))]
    out = subprocess.run([sys.executable, "-c", _PARSE_PROBE, str(DAGS.parent), *dag_files],
                         capture_output=True, text=True, check=True)
    parsed = json.loads(out.stdout.splitlines()[-1])
    loaded = set(parsed["modules"])
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    assert {m for m in loaded if m.startswith("leadflow")} <= {"leadflow", "leadflow.env", "leadflow.validation",
                                                               "leadflow.dag_support", "leadflow.airflow_adapter"}
    assert parsed["opened"] == []


def test_a_crm_run_alerts_once_from_its_teardown_and_failing_tasks_only_record_their_error(dagbag):
    """The teardown sends the run's one alert; no DAG-level callback and no task callback alerts too."""
    from leadflow.dag_support import record_task_failure

    assert_alerts_once_from_its_teardown(dagbag.dags["leadflow_hubspot"], record_task_failure)
