"""The block reader, and the docs checks failing on blocks that are wrong: a check that cannot fail proves nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import REPO, Block, parse_blocks
from tests.docs.checks import DocEnv, run_block

FAILURES = (AssertionError, pytest.fail.Exception, Exception)


def test_blocks_are_read_with_language_check_and_line():
    text = (
        'Intro\n\n```python title="a DAG" check=gate-dag\nwith DAG():\n    pass\n```\n\n'
        "1. a list item\n\n   ```bash\n   make test\n   ```\n"
        "~~~~json check=xcom-record\n{}\n~~~~\n"
    )
    python, bash, json_block = parse_blocks(text, Path("x.md"))
    assert (python.lang, python.check, python.line, python.code) == ("python", "gate-dag", 3, "with DAG():\n    pass\n")
    assert (bash.lang, bash.check, bash.code) == ("bash", None, "make test\n")
    assert (json_block.lang, json_block.check, json_block.code) == ("json", "xcom-record", "{}\n")


def _block(lang: str, check: str | None, code: str) -> Block:
    return Block(path=REPO / "docs" / "wrong.md", line=1, lang=lang, code=code, check=check)


@pytest.mark.parametrize(
    ("check", "lang", "code", "reason"),
    [
        pytest.param(None, "bash", "make test\n", "the block names no check", id="no-check"),
        pytest.param("spell", "bash", "make test\n", "unknown check 'spell'", id="unknown-check"),
        pytest.param(
            "shell", "sh", "make test\n", "check shell runs \\('bash',\\) blocks, not 'sh'", id="wrong-language"
        ),
        pytest.param(
            "shell", "bash", "rm -rf /tmp/nothing-here\n", "no check knows the command 'rm -rf", id="unknown-command"
        ),
        pytest.param(
            "shell",
            "bash",
            "make no-such-target\n",
            "No rule to make target 'no-such-target'",
            id="make-target-missing",
        ),
        pytest.param(
            "shell",
            "bash",
            "pip install apache-airflow-providers-quota\n",
            "installs \\['apache-airflow-providers-quota'\\], the package is airflow-provider-quota",
            id="wrong-package",
        ),
        pytest.param(
            "shell",
            "bash",
            "export AIRFLOW__CORE__NO_SUCH_SETTING=1\n",
            "Airflow has no setting \\[core\\] no_such_setting",
            id="unknown-setting",
        ),
        pytest.param(
            "shell", "bash", "export QUOTA_KEY=x\n", "no check knows the variable QUOTA_KEY", id="unknown-variable"
        ),
        pytest.param(
            "shell",
            "bash",
            'export AIRFLOW_CONN_SONARLY_DEFAULT=\'{"conn_type": "sonarly", "host": "http://api.example.com", '
            '"password": "sk_live_x"}\'\n',
            "plain http:// to a host that is not loopback",
            id="plain-http-to-a-remote-host",
        ),
        pytest.param(
            "shell",
            "bash",
            'export AIRFLOW_CONN_INDEED_DEFAULT=\'{"conn_type": "indeed", "host": "http://127.0.0.1:8765", '
            '"login": "sandbox-client-id", "password": "wrong-secret", "extra": {"employer_id": "emp-acme"}}\'\n',
            "HTTP 401 invalid_client",
            id="sandbox-connection-with-a-wrong-secret",
        ),
        pytest.param(
            "shell",
            "bash",
            'export AIRFLOW_CONN_SONARLY_DEFAULT=\'{"conn_type": "sonarly",\'\n',
            "Expecting property name",
            id="bad-json",
        ),
        pytest.param(
            "shell",
            "bash",
            "curl -X PUT http://127.0.0.1:8765/_sandbox/quota/ag_sandbox -d '{\"used_up\": true}'\n",
            "400 .*unexpected keyword argument 'used_up'",
            id="curl-rejected-by-the-sandbox",
        ),
        pytest.param(
            "shell",
            "bash",
            "airflow backfill create --dag-id indeed_monthly_spend --from-date 2024-11-01 --to-date 2025-01-01\n",
            "date\\(2024, 11, 1\\) >= datetime.date\\(2024, 12, 1\\)",
            id="backfill-from-a-month-the-api-does-not-serve",
        ),
        pytest.param(
            "shell",
            "bash",
            "airflow connections add sonarly_default --conn-uri=sonarly://:sk_live_x@api.sonarly.io\n",
            "define connections with --conn-json JSON or --conn-password, not .*--conn-uri=",
            id="connection-key-in-the-audit-log",
        ),
        pytest.param(
            "shell",
            "bash",
            "airflow connections add warehouse --conn-type postgres --conn-host db --conn-login loader\n",
            "the connection has no --conn-password",
            id="connection-without-a-secret",
        ),
        pytest.param(
            "shell",
            "bash",
            "airflow triggerer --pin-queue quota\n",
            "Airflow's CLI refuses .*unrecognized arguments: --pin-queue",
            id="triggerer-option-airflow-does-not-have",
        ),
        pytest.param(
            "ddl-snowflake",
            "sql",
            "CREATE TABLE IF NOT EXISTS t (employer_id VARCHAR(256) NOT NULL, month CHAR(6) NOT NULL, "
            "month_start DATE NOT NULL, api_quota BIGINT NOT NULL, requests_count BIGINT NOT NULL, "
            "spend_amount NUMERIC NOT NULL, currency_code VARCHAR(256) NOT NULL, extracted_at TIMESTAMP NOT NULL, "
            "PRIMARY KEY (employer_id, month))\n",
            "the operator runs on snowflake",
            id="ddl-not-what-the-operator-runs",
        ),
        pytest.param(
            "xcom-record",
            "json",
            '{"employer_id": "emp-acme", "month": "122024", "month_start": "2024-12-01", "api_quota": 3000, '
            '"requests_count": 1428, "spend_amount": "9963.30", "currency_code": "USD", '
            '"api_usage": [{"requestsCount": 1428}], "extracted_at": "2026-11-22T15:38:54+00:00"}\n',
            "'9963.29'\\} != \\{'spend_amount': '9963.30'",
            id="xcom-record-off-by-a-cent",
        ),
        pytest.param(
            "budget-dag",
            "python",
            "from airflow.sdk import DAG\n"
            "from airflow_provider_quota.operators.indeed import IndeedBudgetCheckOperator\n"
            "with DAG(dag_id='float_budget', schedule=None):\n"
            "    IndeedBudgetCheckOperator(task_id='check', budget=20000.0, currency='USD')\n",
            "budget must be an exact decimal",
            id="budget-as-a-float",
        ),
        pytest.param(
            "api-quota-gate-dag",
            "python",
            "from airflow.sdk import DAG\n"
            "from airflow_provider_quota.sensors.indeed import IndeedApiQuotaSensor\n"
            "with DAG(dag_id='gate_past_the_quota', schedule=None):\n"
            "    IndeedApiQuotaSensor(task_id='gate', max_used='1.5')\n",
            "dag.test\\(\\) of gate_past_the_quota: failed",
            id="gate-threshold-out-of-range",
        ),
    ],
)
def test_a_wrong_block_fails_its_check(check, lang, code, reason, request):
    """Each wrong block fails for its own reason, not because the check crashed on something else."""
    with pytest.raises(FAILURES) as failure:
        run_block(_block(lang, check, code), DocEnv(request))
    assert re.search(reason, str(failure.value)), f"failed for another reason: {failure.value}"


def test_the_right_xcom_record_passes(request):
    """The counterpart of the off-by-a-cent case: the same record with the right spend passes."""
    code = (
        '{"employer_id": "emp-acme", "month": "122024", "month_start": "2024-12-01", "api_quota": 3000, '
        '"requests_count": 1428, "spend_amount": "9963.29", "currency_code": "USD", '
        '"api_usage": [{"requestsCount": 1428}], "extracted_at": "2026-11-22T15:38:54+00:00"}\n'
    )
    run_block(_block("json", "xcom-record", code), DocEnv(request))


def test_a_breach_message_off_in_the_last_place_fails(request):
    """The budget-breach-message check recomputes the message: one digit off fails it."""
    page = REPO / "docs" / "howto" / "budget-alerts-and-api-quota-gates.md"
    [right] = [block for block in parse_blocks(page.read_text(), page) if block.check == "budget-breach-message"]
    wrong = Block(
        path=page, line=right.line, lang=right.lang, code=right.code.replace("1.338552", "1.338553"), check=right.check
    )
    with pytest.raises(AssertionError, match=r"1\.338553 times"):
        run_block(wrong, DocEnv(request))
