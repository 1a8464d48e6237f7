"""Airflow DAG: one mapped task per `etl` unit of each daily interval.

Copy this file and `etl_units.py` into your DAGs folder; the workers need the `etl` binary on
PATH (or ETL_BIN), the pipeline file, and the environment it names (API credentials, ETL_OUT
on S3-compatible storage shared by every worker, AWS_* for it).

    plan_units  ->  run_unit.expand(unit=...)   (one task instance per unit)
         \\->  check_lost                        (fails, and alerts, if a window was lost)

- `etl plan --json` is the work list: it sends no data request, and units already done are
  left out, so a rerun of a DAG run only retries what failed.
- Each task runs `etl run --unit ID`; its exit code decides: 3 (and 1, 130) retry with backoff,
  2 and 4 fail at once without retry (AirflowFailException).
- Units that share a rate budget (the CDN listing's 100/min) run at most RATE_SHARE at a time,
  each with `--rate-share 1/RATE_SHARE`, so that together they stay under the API's limit.
- Workers share only the object store: a task retried while its first try is still running
  waits on the unit's claim and then finds the unit committed; nothing is written twice.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.decorators import dag, task
from airflow.exceptions import AirflowFailException

from etl_units import PermanentFailure, plan, run_unit

PIPELINE = os.environ.get("ETL_PIPELINE", "/etc/etl/cdn.yaml")
RATE_SHARE = 4


def _interval(context) -> tuple[str, str]:
    return context["data_interval_start"].isoformat(), context["data_interval_end"].isoformat()


@dag(
    dag_id="etl_units",
    schedule="@daily",
    start_date=datetime(2026, 9, 1),
    catchup=True,
    max_active_runs=2,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True},
)
def etl_units():
    @task(multiple_outputs=True)
    def plan_units(**context) -> dict:
        start, end = _interval(context)
        try:
            p = plan(PIPELINE, start, end)
        except PermanentFailure as e:
            raise AirflowFailException(str(e)) from e
        return {"units": p.to_run(), "shared": bool(p.budgets()), "lost": p.lost}

    # At most RATE_SHARE units at once over all DAG runs, each with 1/RATE_SHARE of the budget.
    @task(max_active_tis_per_dag=RATE_SHARE)
    def run_unit_task(unit: str, shared: bool, **context) -> None:
        start, end = _interval(context)
        try:
            run_unit(PIPELINE, start, end, unit, rate_share=RATE_SHARE if shared else None)
        except PermanentFailure as e:
            raise AirflowFailException(str(e)) from e

    @task(retries=0)
    def check_lost(lost: list[str]) -> None:
        if lost:
            raise AirflowFailException("\n".join(lost))

    planned = plan_units()
    run_unit_task.partial(shared=planned["shared"]).expand(unit=planned["units"])
    check_lost(planned["lost"])


etl_units()
