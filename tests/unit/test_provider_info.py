"""Provider registration: entry point, metadata, connection forms, and the airflow CLI."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

from airflow_provider_quota import __version__
from airflow_provider_quota.get_provider_info import get_provider_info


def test_entry_point_points_at_get_provider_info():
    [entry] = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_quota")
    ]
    assert entry.name == "provider_info"
    assert entry.load() is get_provider_info


def test_metadata_matches_the_package():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-quota"
    assert info["versions"][0] == __version__
    assert version("airflow-provider-quota") == __version__  # pyproject reads the same one place
    modules = [
        m
        for kind in ("hooks", "sensors", "triggers", "operators")
        for group in info[kind]
        for m in group["python-modules"]
    ]
    for module in modules:
        __import__(module)


def test_connection_forms_relabel_and_describe_fields():
    types = {entry["connection-type"]: entry for entry in get_provider_info()["connection-types"]}
    sonarly, indeed = types["sonarly"], types["indeed"]
    assert sonarly["ui-field-behaviour"]["relabeling"]["password"] == "API key"
    assert "login" in sonarly["ui-field-behaviour"]["hidden-fields"]
    assert set(sonarly["conn-fields"]) == {"account_group_id", "allow_insecure_http"}
    assert indeed["ui-field-behaviour"]["relabeling"] == {
        "host": "API URL",
        "login": "Client ID",
        "password": "Client secret",
    }
    assert set(indeed["conn-fields"]) == {"employer_id", "scope", "allow_insecure_http"}
    for entry in types.values():
        hook_module, _, hook_class = entry["hook-class-name"].rpartition(".")
        hook = getattr(__import__(hook_module, fromlist=[hook_class]), hook_class)
        assert hook.conn_type == entry["connection-type"] and hook.hook_name == entry["hook-name"]
        assert "get_ui_field_behaviour" not in vars(hook) and "get_connection_form_widgets" not in vars(hook)


def test_form_behaviour_names_only_standard_fields_the_ui_renders():
    # Airflow 3's connection form applies relabeling and placeholders to the standard fields only: a
    # placeholder keyed by an extra's name is silently dropped (the examples live in its description).
    standard = {"description", "host", "schema", "login", "password", "port"}
    for entry in get_provider_info()["connection-types"]:
        behaviour = entry["ui-field-behaviour"]
        hidden = set(behaviour["hidden-fields"])
        for key in ("placeholders", "relabeling"):
            assert set(behaviour[key]) <= standard - hidden, (entry["connection-type"], key)
        assert hidden <= standard


def test_providers_manager_loads_the_form_metadata():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-quota" in manager.providers
    behaviours = manager.field_behaviours
    assert behaviours["sonarly"]["relabeling"]["password"] == "API key"
    widgets = manager.connection_form_widgets
    assert "extra__sonarly__account_group_id" in widgets
    assert "extra__indeed__employer_id" in widgets and "extra__indeed__scope" in widgets


def test_airflow_cli_lists_the_provider_and_both_connection_types():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cli = [sys.executable, "-m", "airflow", "providers"]
    listed = json.loads(
        subprocess.run([*cli, "list", "-o", "json"], capture_output=True, text=True, check=True, env=env).stdout
    )
    assert {"package_name": "airflow-provider-quota", "version": __version__} in [
        {"package_name": p["package_name"], "version": p["version"]} for p in listed
    ]
    hooks = json.loads(
        subprocess.run([*cli, "hooks", "-o", "json"], capture_output=True, text=True, check=True, env=env).stdout
    )
    by_type = {hook["connection_type"]: hook for hook in hooks}
    assert by_type["sonarly"]["class"] == "airflow_provider_quota.hooks.sonarly.SonarlyHook"
    assert by_type["indeed"]["class"] == "airflow_provider_quota.hooks.indeed.IndeedHook"


def test_provider_info_follows_airflows_schema():
    import jsonschema
    from airflow import __file__ as airflow_init

    schema = json.loads((Path(airflow_init).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_the_quotas_plugin_is_registered_both_ways_providers_register_plugins():
    [plugin] = get_provider_info()["plugins"]
    module, _, name = plugin["plugin-class"].rpartition(".")
    plugin_class = getattr(importlib.import_module(module), name)
    assert plugin_class.name == plugin["name"] == "quotas"
    # Airflow reads the provider info's entry only with [core] lazy_discover_providers = False
    [entry] = [ep for ep in entry_points(group="airflow.plugins") if ep.value.startswith("airflow_provider_quota")]
    assert entry.load() is plugin_class


def test_airflow_config_list_shows_the_quota_section_with_its_defaults():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "config", "list", "--section", "quota", "--show-values"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in env.items() if not k.startswith("AIRFLOW__QUOTA__")},
    ).stdout
    options = dict(line.split(" = ", 1) for line in listed.splitlines() if " = " in line)
    assert options == {"ui_cache_seconds": "60", "spend_conn_id": "", "spend_table": "indeed_api_quota_usage"}
