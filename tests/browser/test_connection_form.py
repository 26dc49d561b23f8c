"""
Both connection types in Airflow's own connection form, in headless Chromium (``make ui-check``).

For ``sonarly`` and ``indeed``: the add-connection form shows the relabelled standard fields with
their placeholders, hides the unused ones, and lists the extras with their labels and descriptions;
saved with sandbox credentials, the connections list's Test button reports test_connection()'s
message, and with a wrong secret a clear failure that does not echo the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_quota.get_provider_info import get_provider_info
from airflow_provider_quota.sandbox import SandboxClient, SandboxServer
from tests.browser.conftest import AirflowUi, save_screenshot
from tests.conftest import INDEED_CLIENT_ID, INDEED_SECRET, SONARLY_KEY

INSECURE_HTTP_LABEL = "Allow plain http:// to a non-loopback host"


@dataclass(frozen=True)
class FormSpec:
    conn_type: str
    type_name: str  # as the Connection Type list shows it (the hook name)
    standard_labels: list[str]  # in form order; any other standard field must be absent
    placeholders: dict[str, str]
    secret_label: str
    extras: dict[str, str]  # label -> extra field name
    extra_values: dict[str, str] = field(default_factory=dict)  # extra label -> value to type
    login: str | None = None
    secret: str = ""
    wrong_secret: str = ""
    success: str = ""  # regex of test_connection()'s message, {url} = the sandbox URL
    failure: str = ""  # regex of the failure message
    calls: dict[str, int] = field(default_factory=dict)  # sandbox requests one successful test makes


SONARLY = FormSpec(
    conn_type="sonarly",
    type_name="Sonarly",
    standard_labels=["Description", "API URL", "API key"],
    placeholders={"API URL": "https://api.sonarly.io (default when empty)", "API key": "sk_live_..."},
    secret_label="API key",
    extras={"Default account group ID": "account_group_id", INSECURE_HTTP_LABEL: "allow_insecure_http"},
    extra_values={"Default account group ID": "ag_sandbox"},
    secret=SONARLY_KEY,
    wrong_secret="sk_test_wrong_key_for_ui_check",
    success=r"Connected to {url}: the API key sees 2 account group\(s\)",
    failure=r"Sonarly API error, HTTP 401 UNAUTHORIZED: Invalid or missing API key \(traceId \w+\)",
    calls={"sonarly_accounts": 1, "sonarly_quota": 0},
)
INDEED = FormSpec(
    conn_type="indeed",
    type_name="Indeed Sponsored Jobs API",
    standard_labels=["Description", "API URL", "Client ID", "Client secret"],
    placeholders={
        "API URL": "https://apis.indeed.com (default when empty)",
        "Client ID": "OAuth client id of your Indeed app",
        "Client secret": "OAuth client secret",
    },
    secret_label="Client secret",
    extras={"Employer ID": "employer_id", "OAuth scope": "scope", INSECURE_HTTP_LABEL: "allow_insecure_http"},
    extra_values={"Employer ID": "emp-acme"},
    login=INDEED_CLIENT_ID,
    secret=INDEED_SECRET,
    wrong_secret="wrong-client-secret-for-ui-check",
    success=(
        r"Obtained an access token from {url} for employer emp-acme, "
        r"scope 'employer\.advertising\.account\.read', valid for 3600 s \(no Sponsored Jobs API call was made\)"
    ),
    failure=r"Indeed API error, HTTP 401 invalid_client: Client authentication failed",
    calls={"indeed_token": 1, "indeed_quota_usage": 0},
)
SPECS = [pytest.param(SONARLY, id="sonarly"), pytest.param(INDEED, id="indeed")]
ABSENT_STANDARD_LABELS = ["Host", "Login", "Password", "Port", "Schema"]


def _declared_extras(conn_type: str) -> dict[str, Any]:
    [entry] = [e for e in get_provider_info()["connection-types"] if e["connection-type"] == conn_type]
    return dict(entry["conn-fields"])


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def form_field(scope: Any, label: str) -> Any:
    """The form field (label, input, helper text) whose label reads exactly ``label`` (a trailing * allowed)."""
    pattern = re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$")
    return scope.locator('[data-scope="field"][data-part="root"]').filter(
        has=scope.page.locator('label[data-scope="field"][data-part="label"]', has_text=pattern)
    )


def expect_field_labels(section: Any, labels: list[str]) -> None:
    """The section's fields are exactly these, in this order (waits for the form to render them)."""
    _expect()(section.locator('label[data-scope="field"][data-part="label"]')).to_have_text(
        [re.compile(rf"^\s*{re.escape(label)}\s*$") for label in labels]
    )


def open_section(dialog: Any, name: str) -> Any:
    """Open one of the form's accordion sections (Standard Fields, Extra Fields) and return its region."""
    expect = _expect()
    trigger = dialog.get_by_role("button", name=name, exact=True)
    expect(trigger).to_be_visible()
    # The trigger's state, not the content's visibility, decides: clicking an open section closes it.
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    expect(trigger).to_have_attribute("aria-expanded", "true")
    region = dialog.locator(f'[id="{trigger.get_attribute("aria-controls")}"]')
    expect(region).to_be_visible()
    return region


def open_add_form(page: Any, ui: AirflowUi, spec: FormSpec, conn_id: str) -> Any:
    expect = _expect()
    page.goto(f"{ui.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Add Connection")).to_be_visible()
    form_field(dialog, "Connection ID").locator("input").fill(conn_id)
    dialog.get_by_role("combobox").click()
    page.keyboard.type(spec.type_name)
    page.get_by_role("option", name=spec.type_name, exact=True).click()
    expect(form_field(dialog, "Connection Type")).to_contain_text(spec.type_name)
    return dialog


def add_connection(page: Any, ui: AirflowUi, spec: FormSpec, conn_id: str, host: str, secret: str) -> Any:
    """Fill in and save the form; return the connection's row in the connections list."""
    expect = _expect()
    ui.forget_connection(conn_id)
    dialog = open_add_form(page, ui, spec, conn_id)
    standard = open_section(dialog, "Standard Fields")
    form_field(standard, "API URL").locator("input").fill(host)
    if spec.login is not None:
        form_field(standard, "Client ID").locator("input").fill(spec.login)
    form_field(standard, spec.secret_label).locator("input").fill(secret)
    extras = open_section(dialog, "Extra Fields")
    for label, value in spec.extra_values.items():
        form_field(extras, label).locator("input").fill(value)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=conn_id, exact=True))
    expect(row).to_contain_text(spec.conn_type)
    expect(row).to_contain_text(host)
    return row


def press_test(page: Any, row: Any, title: str) -> Any:
    """Press the row's Test button; return the description of the toast titled ``title``."""
    expect = _expect()
    row.get_by_role("button", name="Test Connection").click()
    toast = page.locator('[data-scope="toast"][data-part="root"]').filter(
        has=page.locator('[data-part="title"]', has_text=title)
    )
    expect(toast).to_be_visible()
    return toast.locator('[data-part="description"]')


@pytest.mark.parametrize("spec", SPECS)
def test_form_shows_the_relabelled_fields_placeholders_and_extras(page: Any, airflow_ui: AirflowUi, spec: FormSpec):
    expect = _expect()
    dialog = open_add_form(page, airflow_ui, spec, f"{spec.conn_type}_form")

    standard = open_section(dialog, "Standard Fields")
    expect_field_labels(standard, spec.standard_labels)
    for label in ABSENT_STANDARD_LABELS:
        expect(form_field(dialog, label)).to_have_count(0)
    expect(standard.locator("input, textarea")).to_have_count(len(spec.standard_labels))
    for label, placeholder in spec.placeholders.items():
        expect(form_field(standard, label).locator("input")).to_have_attribute("placeholder", placeholder)
    expect(form_field(standard, spec.secret_label).locator("input")).to_have_attribute("type", "password")
    save_screenshot(page, f"{spec.conn_type}-form-standard-fields", docs=True)

    extras = open_section(dialog, "Extra Fields")
    expect_field_labels(extras, list(spec.extras))
    declared = _declared_extras(spec.conn_type)
    assert set(spec.extras.values()) == set(declared)
    for label, name in spec.extras.items():
        extra = form_field(extras, label)
        expect(extra.locator('[data-part="helper-text"]')).to_have_text(declared[name]["description"])
        default = declared[name]["schema"].get("default")
        if name == "allow_insecure_http":
            expect(extra.locator('input[type="checkbox"]')).not_to_be_checked()
        else:
            expect(extra.locator("input")).to_have_value(default or "")
    save_screenshot(page, f"{spec.conn_type}-form-extra-fields", docs=True)


@pytest.mark.parametrize("spec", SPECS)
def test_test_button_reports_test_connection_success(
    page: Any, airflow_ui: AirflowUi, sandbox_server: SandboxServer, sandbox: SandboxClient, spec: FormSpec
):
    expect = _expect()
    row = add_connection(page, airflow_ui, spec, f"{spec.conn_type}_ui_check", sandbox_server.url, spec.secret)
    message = press_test(page, row, "Test Connection Successful")
    expect(message).to_have_text(re.compile("^" + spec.success.format(url=re.escape(sandbox_server.url)) + "$"))
    save_screenshot(page, f"{spec.conn_type}-test-success", docs=True)
    requests = sandbox.stats()["requests"]
    assert {endpoint: requests[endpoint] for endpoint in spec.calls} == spec.calls


@pytest.mark.parametrize("spec", SPECS)
def test_test_button_reports_a_clear_failure_for_a_wrong_secret(
    page: Any, airflow_ui: AirflowUi, sandbox_server: SandboxServer, sandbox: SandboxClient, spec: FormSpec
):
    expect = _expect()
    conn_id = f"{spec.conn_type}_wrong_secret"
    row = add_connection(page, airflow_ui, spec, conn_id, sandbox_server.url, spec.wrong_secret)
    message = press_test(page, row, "Test Connection Failed")
    expect(message).to_have_text(re.compile("^" + spec.failure + "$"))
    assert spec.wrong_secret not in page.content()
    save_screenshot(page, f"{spec.conn_type}-test-failure")
