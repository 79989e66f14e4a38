"""What every leadflow DAG's failure handling must look like (the CRM and maintenance DAGs' tests)."""

from __future__ import annotations

from typing import Any, Callable


def assert_alerts_once_from_its_teardown(dag: Any, task_failure_callback: Callable[..., Any]) -> None:
    """`close_run` is a teardown after every other task and sends the run's one alert; no DAG-level
    callback, and every other task has only `task_failure_callback` (which records, never alerts)."""
    close = dag.get_task("close_run")
    assert close.is_teardown and not close.on_failure_fail_dagrun
    assert close.upstream_task_ids == {t.task_id for t in dag.tasks} - {"close_run"}
    assert not dag.on_failure_callback and not dag.on_success_callback
    for task in dag.tasks:
        callbacks = task.on_failure_callback or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        expected = [] if task.task_id == "close_run" else [task_failure_callback]
        assert callbacks == expected, task.task_id
        assert not task.on_retry_callback and not task.on_success_callback, task.task_id
