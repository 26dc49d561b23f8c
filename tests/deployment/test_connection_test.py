"""Connection Test through the REST API (what the UI's Test button calls), both types, right and wrong credentials."""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlsplit

import pytest

from tests.conftest import INDEED_CLIENT_ID, INDEED_SECRET, SONARLY_KEY

pytestmark = pytest.mark.deployment

WRONG_SONARLY_KEY = "sk_test_wrong_key_for_the_connection_test"
WRONG_INDEED_SECRET = "wrong-client-secret-for-the-connection-test"
CASES = {
    "Sonarly, right key": ("sonarly", {"password": SONARLY_KEY}, True, "the API key sees 2 account group(s)"),
    "Sonarly, wrong key": ("sonarly", {"password": WRONG_SONARLY_KEY}, False, "HTTP 401 UNAUTHORIZED"),
    "Indeed, right secret": (
        "indeed",
        {"login": INDEED_CLIENT_ID, "password": INDEED_SECRET},
        True,
        "Obtained an access token",
    ),
    "Indeed, wrong secret": (
        "indeed",
        {"login": INDEED_CLIENT_ID, "password": WRONG_INDEED_SECRET},
        False,
        "HTTP 401 invalid_client",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_connection_test_through_the_rest_api(harness, case):
    conn_type, credentials, ok, message = CASES[case]
    harness.issued.static.update({"wrong Sonarly key": WRONG_SONARLY_KEY, "wrong Indeed secret": WRONG_INDEED_SECRET})
    harness.reset_sandbox()

    answer = harness.api.test_connection(
        f"{conn_type}_form", conn_type=conn_type, host=harness.sandbox.url, **credentials
    )

    assert answer["status"] is ok, answer
    assert message in answer["message"], answer
    assert credentials["password"] not in answer["message"]
    stats = harness.sandbox.stats()["requests"]
    # The Test button calls free endpoints only, never the quota or the usage.
    assert stats["sonarly_quota"] == stats["indeed_quota_usage"] == 0
    assert stats["sonarly_accounts" if conn_type == "sonarly" else "indeed_token"] == 1
    harness.results.figure("connection Test", case, f"{'ok' if ok else 'refused'}: {answer['message']}")


#: Ways to give ``airflow connections add`` a key; the audit log (the ``log`` table) records each command.
CLI_FORMS = {
    "--conn-json JSON": lambda key, host: ["--conn-json", _json(key, host)],
    "--conn-json=JSON": lambda key, host: [f"--conn-json={_json(key, host)}"],
    "--conn-type sonarly --conn-password KEY": lambda key, host: [
        "--conn-type",
        "sonarly",
        "--conn-host",
        host,
        "--conn-password",
        key,
    ],
    "--conn-uri URI": lambda key, host: ["--conn-uri", f"sonarly://:{key}@{urlsplit(host).netloc}"],
    "--conn-uri=URI": lambda key, host: [f"--conn-uri=sonarly://:{key}@{urlsplit(host).netloc}"],
}
RECOMMENDED_FORMS = ("--conn-json JSON", "--conn-type sonarly --conn-password KEY")


def _json(key: str, host: str) -> str:
    return json.dumps({"conn_type": "sonarly", "host": host, "password": key})


def test_which_ways_of_airflow_connections_add_keep_the_key_out_of_the_audit_log(harness):
    keys = {form: f"sk_test_cli_form_{index}_{secrets.token_hex(6)}" for index, form in enumerate(CLI_FORMS)}
    in_clear = {}
    for index, (form, arguments) in enumerate(CLI_FORMS.items()):
        conn_id = f"cli_form_{index}"
        harness.deployment.airflow(
            "connections", "add", conn_id, *arguments(keys[form], harness.sandbox.url), log_name="cli-connections-add"
        )
        stored = harness.api.get(f"/connections/{conn_id}")
        assert stored["conn_type"] == "sonarly"
        harness.api.call("DELETE", f"/connections/{conn_id}", expect=(204,))
    audit = json.dumps(harness.meta.rows("SELECT event, extra FROM log WHERE event LIKE '%connections%'"), default=str)
    for form in CLI_FORMS:
        in_clear[form] = keys[form] in audit

    assert "connections_add" in audit or "connections add" in audit  # the commands were audited
    assert not any(in_clear[form] for form in RECOMMENDED_FORMS), in_clear
    for form, leaked in in_clear.items():
        harness.results.figure(
            "airflow connections add: key in the audit log", form, "in clear" if leaked else "masked"
        )
