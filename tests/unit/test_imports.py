"""
No Airflow 2 import paths: every module imports, and every example DAG parses, with deprecation warnings as errors.

Two checks, because they catch different things:

- at run time, a fresh interpreter turns ``DeprecationWarning``, ``FutureWarning`` and Airflow's own
  classes (``RemovedInAirflow4Warning`` of core and of the task SDK,
  ``AirflowProviderDeprecationWarning``, ``DeprecatedImportWarning``) into errors, then imports every
  module of the package and runs every file of ``example_dags/``;
- statically, a scan of the package, the example DAGs and the Python code in the docs and the
  README for Airflow 2 import paths, because several still import silently in Airflow 3
  (``from airflow.models import BaseOperator``, ``from airflow import DAG``,
  ``from airflow.utils import timezone``...).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "airflow_provider_quota"
EXAMPLES = REPO / "example_dags"
DOCS = REPO / "docs"

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


# ----------------------------------------------------------------------------- the static scan

#: Airflow 2 modules (and everything below them), with what Airflow 3 code uses instead.
AIRFLOW2_MODULES = {
    "airflow.models": "airflow.sdk (BaseOperator, DAG, Connection, Variable, Param...)",
    "airflow.sensors": "airflow.sdk.BaseSensorOperator, or a provider's sensor",
    "airflow.operators": "airflow.sdk.BaseOperator, or apache-airflow-providers-standard",
    "airflow.hooks": "airflow.sdk.BaseHook, or a provider's hook",
    "airflow.decorators": "airflow.sdk (dag, task)",
    "airflow.datasets": "airflow.sdk (Asset, AssetAlias)",
    "airflow.utils.context": "airflow.sdk.Context",
    "airflow.utils.timezone": "airflow.sdk.timezone",
    "airflow.utils.dates": "datetime / pendulum",
    "airflow.utils.helpers": "airflow.sdk (chain, cross_downstream)",
    "airflow.utils.task_group": "airflow.sdk.TaskGroup",
    "airflow.utils.edgemodifier": "airflow.sdk.Label",
    "airflow.utils.log.secrets_masker": "airflow.sdk.log (mask_secret)",
    "airflow.utils.log.logging_mixin": "airflow.sdk.bases / self.log",
    "airflow.configuration": "airflow.sdk.conf",
    "airflow.exceptions": "airflow.sdk.exceptions",
    "airflow.secrets": "airflow.sdk (Connection, Variable)",
    "airflow.lineage": "airflow.sdk.lineage / OpenLineage methods",
    "airflow.triggers.temporal": "apache-airflow-providers-standard triggers",
    "airflow.triggers.external_task": "apache-airflow-providers-standard triggers",
    "airflow.triggers.file": "apache-airflow-providers-standard triggers",
    "airflow.timetables": "airflow.sdk (CronDataIntervalTimetable, CronTriggerTimetable...)",
}
#: Names that ``from airflow import ...`` gave in Airflow 2.
AIRFLOW2_TOP_LEVEL_NAMES = {"DAG", "Dataset", "DatasetAlias", "XComArg", "AirflowException", "settings"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    statement: str
    use_instead: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.statement} (Airflow 2 path; use {self.use_instead})"


def _airflow2_module(module: str) -> str | None:
    for old, new in AIRFLOW2_MODULES.items():
        if module == old or module.startswith(old + "."):
            return new
    return None


def scan_python(source: str, path: str, first_line: int = 1) -> list[Finding]:
    """Airflow 2 imports in Python source; falls back to a line scan when a docs snippet does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return _scan_lines(source, path, first_line)
    findings = []
    for node in ast.walk(tree):
        line = first_line + getattr(node, "lineno", 1) - 1
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (new := _airflow2_module(alias.name)) is not None:
                    findings.append(Finding(path, line, f"import {alias.name}", new))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported = [alias.name for alias in node.names]
            if (new := _airflow2_module(node.module)) is not None:
                findings.append(Finding(path, line, f"from {node.module} import {', '.join(imported)}", new))
            else:  # from airflow import DAG, from airflow.utils import timezone...
                for name in imported:
                    old_module = _airflow2_module(f"{node.module}.{name}")
                    if old_module is None and node.module == "airflow" and name in AIRFLOW2_TOP_LEVEL_NAMES:
                        old_module = "airflow.sdk"
                    if old_module is not None:
                        findings.append(Finding(path, line, f"from {node.module} import {name}", old_module))
    return findings


_IMPORT_LINE = re.compile(r"^\s*(?:from\s+(airflow(?:\.\w+)*)\s+import\s+(.+)|import\s+(airflow(?:\.\w+)*))")


def _scan_lines(source: str, path: str, first_line: int) -> list[Finding]:
    findings = []
    for offset, text in enumerate(source.splitlines()):
        match = _IMPORT_LINE.match(text)
        if not match:
            continue
        module = match.group(1) or match.group(3)
        new = _airflow2_module(module)
        imported = [name.strip(" ()\\").split(" as ")[0].strip() for name in (match.group(2) or "").split(",")]
        for name in imported if new is None and match.group(2) else []:
            new = new or _airflow2_module(f"{module}.{name}")
            if new is None and module == "airflow" and name in AIRFLOW2_TOP_LEVEL_NAMES:
                new = "airflow.sdk"
        if new is not None:
            findings.append(Finding(path, first_line + offset, text.strip(), new))
    return findings


_MARKDOWN_BLOCK = re.compile(r"^```(?:python|py|python3)\s*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_RST_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)\.\. (?:code-block|code|sourcecode):: (?:python|py|python3)[^\n]*\n"
    r"(?:(?P=indent)[ \t]+:[^\n]*\n)*\n?(?P<body>(?:(?:(?P=indent)[ \t]+[^\n]*)?\n)+)",
    re.MULTILINE,
)


def doc_code_blocks(text: str) -> list[tuple[int, str]]:
    """(first line, code) of each Python block of a Markdown or reStructuredText document."""
    blocks = []
    for match in _MARKDOWN_BLOCK.finditer(text):
        blocks.append((text.count("\n", 0, match.start(1)) + 1, match.group(1)))
    for match in _RST_BLOCK.finditer(text):
        blocks.append((text.count("\n", 0, match.start("body")) + 1, textwrap.dedent(match.group("body"))))
    return blocks


def scan_file(path: Path) -> list[Finding]:
    shown = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return scan_python(text, shown)
    return [finding for line, code in doc_code_blocks(text) for finding in scan_python(code, shown, line)]


def scanned_files() -> list[Path]:
    files = [*PACKAGE.rglob("*.py"), *EXAMPLES.rglob("*.py"), REPO / "README.md"]
    if DOCS.is_dir():
        files += [path for pattern in ("*.py", "*.md", "*.rst") for path in DOCS.rglob(pattern)]
    return sorted(path for path in files if path.is_file())


#: Modules that run only in the API server and read the metadata database (the Quotas page): Airflow's
#: ORM models are Airflow 3's own way to task instances and triggers there (airflow.sdk has none).
SERVER_SIDE_MODELS = {"airflow_provider_quota/plugins/quotas_data.py"}


def _allowed(finding: Finding) -> bool:
    statement = finding.statement
    return finding.path in SERVER_SIDE_MODELS and statement.startswith(
        ("from airflow.models.", "import airflow.models.")
    )


def test_no_airflow2_import_paths_in_package_examples_and_docs():
    files = scanned_files()
    assert PACKAGE / "operators" / "indeed.py" in files and EXAMPLES / "indeed_monthly_spend.py" in files
    findings = [finding for path in files for finding in scan_file(path) if not _allowed(finding)]
    assert not findings, "Airflow 2 import paths:\n" + "\n".join(map(str, findings))


@pytest.mark.parametrize(
    "statement",
    [
        "from airflow.models.baseoperator import BaseOperator",
        "from airflow.models import BaseOperator",
        "from airflow.models import DAG",
        "from airflow.models.dag import DAG",
        "from airflow.sensors.base import BaseSensorOperator",
        "from airflow.hooks.base import BaseHook",
        "import airflow.hooks.base",
        "from airflow.utils.context import Context",
        "from airflow.decorators import task",
        "from airflow.datasets import Dataset",
        "from airflow import DAG",
        "from airflow import Dataset",
        "from airflow.operators.python import PythonOperator",
        "from airflow.exceptions import AirflowException",
        "from airflow.configuration import conf",
        "from airflow.utils import timezone",
        "from airflow.utils.timezone import utcnow",
        "from airflow.utils.log.secrets_masker import mask_secret",
    ],
)
def test_the_scan_names_file_and_line_of_each_airflow2_path(tmp_path, statement):
    module = tmp_path / "module.py"
    module.write_text(f'"""Doc."""\n\nimport os\n\n\ndef f():\n    {statement}\n')
    [finding] = scan_file(module)
    assert finding.line == 7 and finding.path == str(module)
    assert str(finding).startswith(f"{module}:7: ")
    # in docs too: a Markdown block and a reStructuredText block, parsable or not
    (tmp_path / "guide.md").write_text(f"# Guide\n\ntext\n\n```python\nx = 1\n{statement}\n...: broken\n```\n")
    assert [f.line for f in scan_file(tmp_path / "guide.md")] == [7]
    (tmp_path / "guide.rst").write_text(
        f"Guide\n=====\n\n.. code-block:: python\n\n    x = 1\n    {statement}\n\nEnd.\n"
    )
    assert [f.line for f in scan_file(tmp_path / "guide.rst")] == [7]


@pytest.mark.parametrize(
    "statement",
    [
        "from airflow.sdk import BaseOperator, BaseSensorOperator, DAG, Asset, task",
        "from airflow.sdk.exceptions import AirflowException",
        "from airflow.triggers.base import BaseTrigger, TriggerEvent",
        "from airflow.providers.common.sql.hooks.sql import DbApiHook",
        "from airflow.providers.openlineage.extractors import OperatorLineage",
        "from airflow.sdk.log import mask_secret",
        "import airflow",
        "from airflow_provider_quota.hooks.base import QuotaApiHook",
    ],
)
def test_the_scan_accepts_airflow3_paths(tmp_path, statement):
    module = tmp_path / "module.py"
    module.write_text(statement + "\n")
    assert scan_file(module) == []


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
    "airflow_provider_quota.warehouse",
    "airflow_provider_quota.lineage",
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
