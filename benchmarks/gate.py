"""
Gated waits in simulated time: quota requests per wait, and worker-slot seconds held during it.

``python -m benchmarks.gate --waits 600,3600,21600``

The quota of the sandbox (in a thread of this process, so that time-machine moves its clock too)
is exhausted and resets ``wait`` seconds later. Sleeps move the clock instead of waiting.

- project: ``SonarlyQuotaSensor(deferrable=True)``: ``execute`` on the "worker" (one check, then
  ``TaskDeferred``), the trigger in an event loop (its sleeps move the clock), then
  ``execute_complete`` on the "worker".
- anchor: ``HttpSensor(poke_interval=60, response_check=<not exhausted>)`` on the quota endpoint.
  With a ``response_check`` HttpSensor never defers (``execute`` falls back to
  ``BaseSensorOperator.execute`` even with ``deferrable=True``), so it pokes on the worker.

Worker-slot seconds: clock seconds (simulated, plus the real time that passed) spent inside
``execute`` and ``execute_complete``, i.e. while a worker slot is held.
"""

from __future__ import annotations

import argparse
import time
import types
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import (
    ACCOUNT_GROUP,
    QUOTA_ENDPOINT,
    airflow_home,
    define_connections,
    emit,
    quiet_logging,
    run_trigger_in_simulated_time,
)

START = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)
POKE_INTERVAL = 60


def run_project(control: Any, traveller: Any, wait: int) -> dict[str, Any]:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_quota.sensors.sonarly import SonarlyQuotaSensor

    control.reset()
    control.set_quota(ACCOUNT_GROUP, used=25, reset_in_seconds=wait)
    sensor = SonarlyQuotaSensor(
        task_id="gate", list_type="LINKEDIN_CLASSIC", deferrable=True, poke_interval=POKE_INTERVAL, timeout=8 * 3600
    )
    slot = 0.0
    begin = time.time()
    try:
        sensor.execute({})
        raise RuntimeError("the quota was not exhausted: the sensor did not defer")
    except TaskDeferred as deferred:
        trigger = deferred.trigger
    slot += time.time() - begin

    waited_from = time.time()
    event = run_trigger_in_simulated_time(trigger, traveller)
    waited = time.time() - waited_from
    begin = time.time()
    quota = sensor.execute_complete({}, event)
    slot += time.time() - begin
    assert quota["exhausted"] is False
    return {"requests": control.requests_to("sonarly_quota"), "slot_seconds": slot, "waited_seconds": waited}


def run_anchor(control: Any, traveller: Any, wait: int) -> dict[str, Any]:
    from airflow.providers.http.sensors.http import HttpSensor

    control.reset()
    control.set_quota(ACCOUNT_GROUP, used=25, reset_in_seconds=wait)
    sensor = HttpSensor(
        task_id="gate",
        http_conn_id="sonarly_http",
        endpoint=QUOTA_ENDPOINT,
        request_params={"listType": "LINKEDIN_CLASSIC"},
        response_check=lambda response: not response.json()["data"]["exhausted"],
        poke_interval=POKE_INTERVAL,
        timeout=8 * 3600,
        mode="poke",
        deferrable=True,  # ignored by HttpSensor when a response_check is set
    )
    begin = time.time()
    sensor.execute({})
    slot = time.time() - begin
    return {"requests": control.requests_to("sonarly_quota"), "slot_seconds": slot, "waited_seconds": slot}


def main(waits: list[int]) -> dict[str, Any]:
    import time_machine

    from airflow_provider_quota.sandbox import SandboxClient, SandboxServer

    results: dict[str, Any] = {}
    with SandboxServer() as server:
        define_connections(server.url)
        control = SandboxClient(server.url)
        for wait in waits:
            with time_machine.travel(START, tick=True) as traveller:
                monotonic = [0.0]

                def sleep(seconds: float, traveller: Any = traveller, monotonic: list[float] = monotonic) -> None:
                    monotonic[0] += seconds
                    traveller.shift(seconds)

                fake_time = types.SimpleNamespace(sleep=sleep, monotonic=lambda monotonic=monotonic: monotonic[0])
                import airflow.sdk.bases.sensor as sensor_module

                real_time = sensor_module.time
                sensor_module.time = fake_time  # type: ignore[assignment]
                try:
                    project = run_project(control, traveller, wait)
                    traveller.move_to(START + timedelta(days=1))
                    anchor = run_anchor(control, traveller, wait)
                finally:
                    sensor_module.time = real_time
            results[str(wait)] = {"project": project, "anchor": anchor}
    return results


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waits", default="600,3600,21600", help="quota reset delays in seconds, comma separated")
    args = parser.parse_args()
    airflow_home()
    quiet_logging()
    emit(main([int(wait) for wait in args.waits.split(",")]))


if __name__ == "__main__":
    cli()
