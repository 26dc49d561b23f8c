"""
No Airflow 2 import paths: every module imports, and every example DAG parses, with deprecation warnings as errors.

Two checks, because they catch different things:

- at run time, a fresh interpreter turns ``DeprecationWarning``, ``FutureWarning`` and Airflow's own
  classes (``RemovedInAirflow4Warning`` of core and of the task SDK,
  ``AirflowProviderDeprecationWarning``, ``DeprecatedImportWarning``) into errors, then imports every
  module of the package and runs every file of ``example_dags/``;
- statically, ruff (``make lint``) flags Airflow 2 import paths in the package and the example DAGs,
  several of which still import silently in Airflow 3 (``from airflow.models import BaseOperator``,
  ``from airflow import DAG``, ``from airflow.utils import timezone``...): its AIR rules and the
  modules banned in pyproject.toml. Here, the same rules run on the Python blocks of the docs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.docs.blocks import all_blocks

PACKAGE = REPO / "airflow_provider_quota"
EXAMPLES = REPO / "example_dags"

IMPORT_EVERYTHING = """
import importlib
import pkgutil
import runpy
import sys
import warnings

# Airflow's own deprecation classes; the command line already made their bases errors.
from airflow.exceptions import AirflowProviderDeprecationWarning, RemovedInAirflow4Warning
from airflow.sdk.exceptions import RemovedInAirflow4Warning as SdkRemovedInAirflow4Warning
from airflow.utils.deprecation_tools import DeprecatedImportWarning

for category in (
    DeprecationWarning,
    PendingDeprecationWarning,
    FutureWarning,
    RemovedInAirflow4Warning,
    SdkRemovedInAirflow4Warning,
    AirflowProviderDeprecationWarning,
    DeprecatedImportWarning,
):
    warnings.filterwarnings("error", category=category)

# Airflow's providers manager may have loaded get_provider_info already: import everything afresh.
for name in [name for name in sys.modules if name.split(".")[0] == "airflow_provider_quota"]:
    del sys.modules[name]

import airflow_provider_quota

modules = [info.name for info in pkgutil.walk_packages(airflow_provider_quota.__path__, "airflow_provider_quota.")]
for name in modules:
    importlib.import_module(name)
for path in sys.argv[1:]:
    runpy.run_path(path, run_name="dag_file")
print("IMPORTED", len(modules), "MODULES AND", len(sys.argv) - 1, "FILES")
"""


def import_with_deprecations_as_errors(files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-W",
            "error::DeprecationWarning",
            "-W",
            "error::PendingDeprecationWarning",
            "-W",
            "error::FutureWarning",
            "-c",
            IMPORT_EVERYTHING,
            *map(str, files),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def package_modules() -> list[str]:
    return sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in PACKAGE.rglob("*.py")
    )


def test_package_and_example_dags_import_with_deprecation_warnings_as_errors():
    dag_files = sorted(EXAMPLES.glob("*.py"))
    assert dag_files
    done = import_with_deprecations_as_errors(dag_files)
    assert done.returncode == 0, done.stderr[-4000:]
    submodules = [name for name in package_modules() if name != "airflow_provider_quota"]
    assert f"IMPORTED {len(submodules)} MODULES AND {len(dag_files)} FILES" in done.stdout


@pytest.mark.parametrize(
    ("source", "warning"),
    [
        ("from airflow.hooks.base import BaseHook", "DeprecatedImportWarning"),
        (
            "import warnings; from airflow.exceptions import RemovedInAirflow4Warning as W; warnings.warn('x', W)",
            "RemovedInAirflow4Warning",
        ),
    ],
)
def test_the_import_check_fails_on_a_deprecated_import(tmp_path, source, warning):
    dag_file = tmp_path / "old_style_dag.py"
    dag_file.write_text(source + "\n")
    done = import_with_deprecations_as_errors([dag_file])
    assert done.returncode != 0
    assert warning in done.stderr


# ----------------------------------------------------------------------------- the static check

#: Airflow 2 paths, several of which still import silently in Airflow 3: ruff's AIR rules flag the
#: use of some, the modules banned in pyproject.toml (TID251) the import of the others.
AIRFLOW2_STATEMENTS = [
    "from airflow.models.baseoperator import BaseOperator",
    "from airflow.models import BaseOperator",
    "from airflow.models import DAG",
    "from airflow.models.dag import DAG",
    "from airflow.models import Variable",
    "from airflow.sensors.base import BaseSensorOperator",
    "from airflow.hooks.base import BaseHook",
    "import airflow.hooks.base",
    "from airflow.utils.context import Context",
    "from airflow.decorators import task",
    "from airflow.datasets import Dataset",
    "from airflow import DAG",
    "from airflow import Dataset",
    "from airflow import DatasetAlias",
    "from airflow.operators.python import PythonOperator",
    "from airflow.exceptions import AirflowException",
    "from airflow.configuration import conf",
    "from airflow.utils import timezone",
    "from airflow.utils.timezone import utcnow",
    "from airflow.utils.log.secrets_masker import mask_secret",
    "from airflow.utils.dates import days_ago",
    "from airflow.utils.helpers import chain_linear",
    "from airflow.utils.task_group import TaskGroup",
    "from airflow.timetables.trigger import CronTriggerTimetable",
    "from airflow.triggers.temporal import TimeDeltaTrigger",
]
AIRFLOW3_STATEMENTS = [
    "from airflow.sdk import BaseOperator, BaseSensorOperator, DAG, Asset, task",
    "from airflow.sdk.exceptions import AirflowException",
    "from airflow.triggers.base import BaseTrigger, TriggerEvent",
    "from airflow.providers.common.sql.hooks.sql import DbApiHook",
    "from airflow.providers.openlineage.extractors import OperatorLineage",
    "from airflow.sdk.log import mask_secret",
    "import airflow",
    "from airflow_provider_quota.hooks.base import QuotaApiHook",
]


def ruff_airflow_findings(path: Path) -> list[tuple[str, int, str]]:
    """(file name, line, message) of what ruff's Airflow rules, as configured in pyproject.toml, say about path."""
    config = ["--config", str(REPO / "pyproject.toml"), "--select", "AIR,TID251", "--output-format", "concise"]
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *config, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    findings = (re.match(r"(.+?):(\d+):\d+: (.*)", line) for line in done.stdout.splitlines())
    return [(Path(found[1]).name, int(found[2]), found[3]) for found in findings if found]


def test_ruff_flags_each_airflow2_path_and_passes_airflow3_ones(tmp_path):
    """``make lint`` carries the check for the package and the example DAGs; this proves its configuration."""
    # each statement, then a use of the name it binds (line 2i+1, 2i+2)
    (tmp_path / "old.py").write_text("".join(f"{line}\n{line.split()[-1]}\n" for line in AIRFLOW2_STATEMENTS))
    (tmp_path / "new.py").write_text("\n".join(AIRFLOW3_STATEMENTS) + "\n")
    findings = ruff_airflow_findings(tmp_path)
    flagged = {(line + 1) // 2 for name, line, _ in findings if name == "old.py"}
    missed = [line for number, line in enumerate(AIRFLOW2_STATEMENTS, 1) if number not in flagged]
    assert missed == [], "ruff does not flag these Airflow 2 paths"
    assert [finding for finding in findings if finding[0] == "new.py"] == []


def test_no_airflow2_import_paths_in_the_python_blocks_of_the_docs(tmp_path):
    """Ruff does not read Markdown: the docs' Python blocks go through the same rules as files."""
    blocks = [block for block in all_blocks() if block.lang == "python"]
    assert len(blocks) >= 5
    for index, block in enumerate(blocks):
        (tmp_path / f"block_{index}.py").write_text(block.code)
    findings = [
        f"{blocks[int(name.removeprefix('block_').removesuffix('.py'))].where}, line {line} of the block: {message}"
        for name, line, message in ruff_airflow_findings(tmp_path)
    ]
    assert not findings, "Airflow 2 import paths in the docs:\n" + "\n".join(findings)


PARSE_IMPORTS = """
import json
import sys

import airflow.sdk

before = set(sys.modules)
import airflow_provider_quota.operators.indeed
import airflow_provider_quota.sensors.sonarly

print(json.dumps(sorted(set(sys.modules) - before)))
"""

#: What a DAG file's parse must not pay for: our payload models, the HTTP clients, the SQL hooks,
#: the sandbox, the triggers and the lineage helpers load when a task runs, not when a DAG is parsed.
HEAVY_AT_PARSE = (
    "airflow_provider_quota.models",
    "airflow_provider_quota.sandbox",
    "airflow_provider_quota.hooks.sonarly",
    "airflow_provider_quota.hooks.indeed",
    "airflow_provider_quota.triggers",
    "airflow_provider_quota.utils.warehouse",
    "airflow_provider_quota.utils.lineage",
    "requests",
    "urllib3",
    "airflow.providers.common.sql",
    "airflow.providers.sqlite",
    "airflow.providers.openlineage",
    "uvicorn",
    "fastapi",
    "airflow_provider_quota.plugins",
)


def test_parsing_a_dag_imports_nothing_heavy_beyond_the_task_sdk():
    """The structural side of the DAG-parse benchmark (docs/performance.md): fails when a heavy import creeps in."""
    result = subprocess.run([sys.executable, "-c", PARSE_IMPORTS], capture_output=True, text=True, check=True)
    added = json.loads(result.stdout.strip().splitlines()[-1])
    assert "airflow_provider_quota.sensors.sonarly" in added  # the probe does see what the imports add
    heavy = [name for name in added if any(name == h or name.startswith(f"{h}.") for h in HEAVY_AT_PARSE)]
    assert heavy == [], f"DAG parsing now imports {heavy}: move them into the methods that use them"


LOAD_PLUGINS = """
import json
import sys

from airflow import plugins_manager

before = set(sys.modules)
plugins_manager.ensure_plugins_loaded()
print(json.dumps({
    "plugins": [plugin.name for plugin in plugins_manager._get_plugins()[0]],
    "errors": plugins_manager.get_import_errors(),
    "added": sorted(set(sys.modules) - before),
}))
"""

#: What the Quotas page needs and only the API server may pay for, when it serves the page.
HEAVY_FOR_PLUGIN_LOADERS = (
    "airflow_provider_quota.plugins.quotas_data",
    "airflow_provider_quota.hooks",
    "airflow_provider_quota.models",
    "airflow.api_fastapi.core_api",
    "fastapi",
    "starlette",
)


def test_loading_the_plugin_in_a_worker_or_triggerer_imports_nothing_heavy():
    """Every process that loads plugins imports the Quotas plugin; the page's app is built by the API server only."""
    result = subprocess.run([sys.executable, "-c", LOAD_PLUGINS], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "quotas" in loaded["plugins"] and loaded["errors"] == {}
    assert "airflow_provider_quota.plugins.quotas" in loaded["added"]  # the probe sees what loading adds
    heavy = [m for m in loaded["added"] if any(m == h or m.startswith(f"{h}.") for h in HEAVY_FOR_PLUGIN_LOADERS)]
    assert heavy == [], f"loading the plugins now imports {heavy}: build them in create_app()"
