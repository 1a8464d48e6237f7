"""Run an `etl` pipeline as one Airflow task per unit, without Airflow in this module.

The DAG (`etl_dag.py`) is thin glue around these two functions, so that what decides the
work list and the retry policy can be tested against the real binary (`tests/e2e/deploy.rs`)
on a machine without Airflow:

- `plan(...)` runs `etl plan FILE --from --to --json` (no data request) and returns the units
  still to run, and the LOST lines the plan printed.
- `run_unit(...)` runs `etl run FILE --from --to --unit ID` and maps its exit code to the
  retry policy: 0 is success, 3 (retryable: network, 5xx, 429 after retries) and 1 (internal)
  raise `RetryableFailure` (the orchestrator may retry), 2 (usage or configuration) and 4
  (permanent: authentication, a request the vendor rejects) raise `PermanentFailure`
  (retrying cannot help), 130 (interrupted) raises `RetryableFailure`.

Units with the same `budget` (a rate limit they share, e.g. the CDN listing) must not run in
more than K tasks at once, each given `--rate-share 1/K`: `rate_share` below.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field

ETL = os.environ.get("ETL_BIN", "etl")

RETRYABLE = {1, 3, 130}
PERMANENT = {2, 4}


class RetryableFailure(Exception):
    """The unit failed for a reason a later try can overcome."""


class PermanentFailure(Exception):
    """The unit failed for a reason no retry can overcome; fix the cause first."""


@dataclass
class Plan:
    """What `etl plan --json` said."""

    units: list[dict] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def to_run(self) -> list[str]:
        """Ids of the units not done yet (`run` and `provisional`), in plan order."""
        return [u["unit"] for u in self.units if u["status"] != "done"]

    def budgets(self) -> set[str]:
        """The rate budgets the units to run draw on."""
        return {u["budget"] for u in self.units if u["status"] != "done" and u.get("budget")}


def plan(pipeline: str, start: str, end: str, env: dict | None = None, etl: str = ETL) -> Plan:
    """`etl plan PIPELINE --from START --to END --json`. A failed plan raises as `run_unit`."""
    res = subprocess.run(
        [etl, "plan", pipeline, "--from", start, "--to", end, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    _raise_for(res.returncode, f"etl plan {pipeline}", res.stderr)
    units = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    lost = [line for line in res.stderr.splitlines() if line.startswith("LOST:")]
    return Plan(units=units, lost=lost)


def run_unit(
    pipeline: str,
    start: str,
    end: str,
    unit: str,
    rate_share: int | None = None,
    env: dict | None = None,
    etl: str = ETL,
) -> str:
    """`etl run PIPELINE --from START --to END --unit UNIT [--rate-share 1/K]`; returns its
    stderr (the summary) on success, raises `RetryableFailure` or `PermanentFailure`."""
    args = [etl, "run", pipeline, "--from", start, "--to", end, "--unit", unit, "--log-format", "json"]
    if rate_share:
        args += ["--rate-share", f"1/{rate_share}"]
    res = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    _raise_for(res.returncode, f"etl run {pipeline} --unit {unit}", res.stderr)
    return res.stderr


def _raise_for(code: int, what: str, stderr: str) -> None:
    if code == 0:
        return
    tail = "\n".join(stderr.splitlines()[-20:])
    if code in PERMANENT:
        raise PermanentFailure(f"{what} exited {code} (permanent: retrying cannot help):\n{tail}")
    raise RetryableFailure(f"{what} exited {code} (retryable):\n{tail}")
