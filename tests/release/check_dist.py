"""
Check the built artifacts where a user installs them: ``make dist`` runs this with the Python of
a fresh virtual environment that holds the wheel and what it requires, installed with plain pip.

It checks that the sdist holds nothing but the package and its metadata, that the package comes
from that environment (not from a source tree), that its version is the wheel's, that
``airflow providers list`` shows it, that Airflow's CLI maps both connection types to hooks that
import and has their connection forms, and that the example DAGs import. Standard library and
Airflow only: the environment has no test tools.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

CONNECTION_TYPES = {
    "sonarly": "airflow_provider_quota.hooks.sonarly.SonarlyHook",
    "indeed": "airflow_provider_quota.hooks.indeed.IndeedHook",
}
EXAMPLE_DAG_IDS = {"prospecting_quota_gate", "indeed_monthly_spend"}
#: What the sdist may hold besides the package: nothing of a virtual environment or a build.
SDIST_FILES = {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO", ".gitignore"}


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"make dist: {message}")
    print(f"ok: {message}")


def check_archives(dist: Path) -> Path:
    """The sdist holds the package and its metadata only; the wheel carries the license. The wheel's path."""
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    strays = [name for name in members if name not in SDIST_FILES and not name.startswith("airflow_provider_quota/")]
    check(
        not strays, f"the sdist holds the package, LICENSE, README.md and pyproject.toml only {strays or ''}".rstrip()
    )
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    check(any(name.endswith(".dist-info/licenses/LICENSE") for name in names), "the wheel carries the LICENSE")
    check("airflow_provider_quota/py.typed" in names, "the wheel carries py.typed")
    return wheel


def airflow_json(*command: str) -> list[dict[str, str]]:
    """An ``airflow`` CLI listing, as JSON."""
    airflow = str(Path(sys.prefix) / "bin" / "airflow")
    listed = subprocess.run([airflow, *command, "--output", "json"], capture_output=True, text=True, check=True)
    return list(json.loads(listed.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, required=True, help="the folder holding the built wheel")
    parser.add_argument("--example-dags", type=Path, required=True, help="the repository's example_dags folder")
    args = parser.parse_args()
    wheel = check_archives(args.dist)
    home = tempfile.mkdtemp(prefix="quota-dist-check-airflow-home-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        }
    )

    import airflow_provider_quota

    location = Path(airflow_provider_quota.__file__).resolve()
    check(Path(sys.prefix).resolve() in location.parents, f"the package imports from the environment ({location})")
    wheel_version = wheel.name.split("-")[1]
    check(airflow_provider_quota.__version__ == wheel_version, f"version {wheel_version}, as in the wheel's name")

    providers = {entry["package_name"]: entry["version"] for entry in airflow_json("providers", "list")}
    check(
        providers.get("airflow-provider-quota") == wheel_version,
        f"`airflow providers list` shows airflow-provider-quota {providers.get('airflow-provider-quota')}",
    )
    hooks = {entry["connection_type"]: entry["class"] for entry in airflow_json("providers", "hooks")}
    forms = {entry["field_behaviours"] for entry in airflow_json("providers", "behaviours")}
    for conn_type, class_name in CONNECTION_TYPES.items():
        check(
            hooks.get(conn_type) == class_name,
            f"`airflow providers hooks`: connection type {conn_type} -> {class_name}",
        )
        check(conn_type in forms, f"`airflow providers behaviours`: the {conn_type} connection form")
        module, _, name = class_name.rpartition(".")
        check(getattr(__import__(module, fromlist=[name]), name).conn_type == conn_type, f"{name} imports")

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(args.example_dags))
    check(not bag.import_errors, f"example DAGs import without errors {bag.import_errors or ''}".rstrip())
    check(set(bag.dag_ids) >= EXAMPLE_DAG_IDS, f"example DAGs {', '.join(sorted(bag.dag_ids))}")


if __name__ == "__main__":
    main()
