"""Bad input through the real system: fails at once, the reason in the task log, no retry spent."""

from __future__ import annotations

import json

import pytest

from tests.deployment.harness import SONARLY_ACCOUNT_GROUP, Harness

pytestmark = pytest.mark.deployment

DAG_ID = "deployment_bad_input"
REVOKED_KEY = "sk_test_revoked_during_the_integration_run"
CASES = {
    "unknown_account_group": ("an unknown account group (404)", "HTTP 404"),
    "revoked_key": ("a revoked API key (401)", "HTTP 401 UNAUTHORIZED"),
    "future_month": ("a month in the future", "is in the future"),
}


@pytest.fixture(scope="module")
def bad_input_run(harness: Harness) -> tuple[str, dict[str, int]]:
    """One run of the bad-input DAG, with a key the sandbox knew and then revoked; its run id and request counts."""
    harness.reset_sandbox()
    harness.issued.static["revoked Sonarly key"] = REVOKED_KEY
    state = harness.sandbox_server.state
    with state.lock:
        state.api_keys[REVOKED_KEY] = frozenset({"prospecting:read"})
    harness.api.put_connection(
        "sonarly_revoked",
        conn_type="sonarly",
        host=harness.sandbox.url,
        password=REVOKED_KEY,
        extra=json.dumps({"account_group_id": SONARLY_ACCOUNT_GROUP}),
    )
    with state.lock:
        del state.api_keys[REVOKED_KEY]
    run_id = harness.api.trigger(DAG_ID)
    run = harness.api.wait_for_run(DAG_ID, run_id, timeout=240)
    assert run["state"] == "failed"
    return run_id, dict(harness.sandbox.stats()["requests"])


@pytest.mark.parametrize("task_id", list(CASES))
def test_bad_input_fails_at_once_with_its_reason_and_no_retry(harness, bad_input_run, task_id):
    run_id, requests = bad_input_run
    what, message = CASES[task_id]

    ti = harness.api.task_instance(DAG_ID, run_id, task_id)

    assert ti["state"] == "failed"
    assert ti["max_tries"] == 3  # retries configured...
    assert ti["try_number"] == 1  # ...and none spent
    assert [row["try_number"] for row in harness.meta.try_history(DAG_ID, run_id) if row["task_id"] == task_id] in (
        [],
        [1],
    )
    log = harness.api.task_log(DAG_ID, run_id, task_id, 1)
    assert message in log, log[-3000:]
    # One request per failing sensor (its only check); the month is refused before any request.
    assert requests["sonarly_quota"] == 2
    assert requests["indeed_token"] == requests["indeed_quota_usage"] == 0
    harness.results.figure("bad input", what, f"failed on try 1 of 4, log: {message!r}")
