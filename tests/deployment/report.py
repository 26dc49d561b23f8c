"""
Run the deployment scenarios (``make integration``) and print the results table of that run.

``python -m tests.deployment.report`` runs ``pytest -m deployment tests/deployment`` in a child
process, which starts the deployment, runs every scenario, stops every process and writes its
figures to ``.integration/results.json``; then it prints one table. When a scenario failed it
also prints the tail of every log file under ``.integration/logs``. Exit status: pytest's.

Options: ``--write-docs`` rewrites the results block of ``docs/deployment.md``; ``--from-json PATH``
prints the table of an earlier run without running anything; arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tests.deployment.cluster import RUN_SETTINGS
from tests.deployment.results import scenario_rank
from tests.generated_blocks import replace_block, split_pytest_args

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("QUOTA_IT_ROOT", REPO / ".integration"))
DEFAULT_JSON = ROOT / "results.json"
DOCS = REPO / "docs" / "deployment.md"
START_MARK = "<!-- deployment-results:start -->"
END_MARK = "<!-- deployment-results:end -->"
LOG_TAIL_LINES = 40


def run_scenarios(json_path: Path, pytest_args: list[str]) -> tuple[int, float]:
    """Run the scenarios in a child process; its exit status and wall time in seconds."""
    env = {**os.environ, "QUOTA_IT_RESULTS": str(json_path)}
    json_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "deployment", "tests/deployment", "-p", "no:cacheprovider"]
    started = time.monotonic()
    status = subprocess.call([*command, *pytest_args], cwd=REPO, env=env)
    return status, time.monotonic() - started


def print_log_tails(logs: Path) -> None:
    """The end of every log file of the run: what CI shows when a scenario failed."""
    for path in sorted(logs.rglob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        print(f"\n===== {path.relative_to(logs.parent)} (last {min(len(lines), LOG_TAIL_LINES)} of {len(lines)} lines)")
        print("\n".join(lines[-LOG_TAIL_LINES:]))


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def machine() -> str:
    return (
        f"{os.cpu_count()} CPU(s) (`nproc`), {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, Airflow {_version('apache-airflow')}, "
        f"apache-airflow-providers-celery {_version('apache-airflow-providers-celery')}, "
        f"Celery {_version('celery')}"
    )


def _short(nodeid: str) -> str:
    module, _, name = nodeid.partition("::")
    return f"{Path(module).stem.removeprefix('test_')}: `{name}`"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def render(data: dict[str, Any], *, command: str) -> str:
    """The run as Markdown: scenarios and outcomes, figures, capacity, and the settings it changed."""
    outcomes = dict(
        sorted(data["outcomes"].items(), key=lambda item: scenario_rank(Path(item[0].partition("::")[0]).name))
    )
    figures = dict(data["figures"])
    environment = figures.pop("environment", {})
    capacity = figures.pop("capacity", {})
    when = data.get("finished_at", "an unknown time")
    duration = f", {data['wall_seconds']:.0f} s" if data.get("wall_seconds") is not None else ""
    counts = {state: sum(entry["outcome"] == state for entry in outcomes.values()) for state in ("passed", "failed")}
    lines = [
        f"Command: `{command}`, {when}{duration}.",
        f"Machine: {machine()}." + (f" Servers: {_value(environment)}." if environment else ""),
        "",
        "| scenario (test) | result | seconds |",
        "|---|---|---:|",
    ]
    lines += [f"| {_short(nodeid)} | {entry['outcome']} | {entry['seconds']} |" for nodeid, entry in outcomes.items()]
    lines += ["", "| scenario | figure | value |", "|---|---|---|"]
    for scenario, values in figures.items():
        lines += [f"| {scenario} | {name} | {_value(value)} |" for name, value in values.items()]
    if capacity:
        lines += [
            "",
            "| triggerer | waiting triggers | memory idle (USS, MiB) | memory with them waiting (USS, MiB) "
            "| (RSS, MiB) | CPU while they wait | sampled over |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, entry in capacity.items():
            lines.append(
                f"| {name} | {entry['triggers']} | {entry['uss_mib_idle']} | {entry['uss_mib_waiting']} "
                f"| {entry['rss_mib_waiting']} | {entry['cpu_percent_waiting']} % | {entry['seconds_sampled']} s |"
            )
    lines += [
        "",
        "| setting changed for the run | this run | Airflow's default | why |",
        "|---|---:|---:|---|",
    ]
    lines += [
        f"| `[{section}] {option}` | {value} | {default} | {why} |"
        for (section, option), (value, default, why) in RUN_SETTINGS.items()
    ]
    lines += ["", f"Tests: {counts['passed']} passed, {counts['failed']} failed."]
    return "\n".join(lines)


def write_docs(block: str) -> None:
    replace_block(DOCS, START_MARK, END_MARK, block)


def main(argv: list[str] | None = None) -> int:
    args, pytest_args = split_pytest_args(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m tests.deployment.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the results block of {DOCS.name}")
    parser.add_argument("--from-json", type=Path, help="print the table of an earlier run; run nothing")
    options = parser.parse_args(args)
    status, json_path = 0, options.from_json or DEFAULT_JSON
    if not options.from_json:
        status, wall_seconds = run_scenarios(json_path, pytest_args)
        if status != 0:
            print_log_tails(ROOT / "logs")
        if json_path.exists():  # when and how long, kept with the figures for --from-json
            data = json.loads(json_path.read_text())
            data["wall_seconds"] = round(wall_seconds, 1)
            data["finished_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            json_path.write_text(json.dumps(data, indent=2))
    if not json_path.exists():
        print(f"no results in {json_path}: the scenarios did not run (pytest exit status {status})")
        return status or 1
    block = render(json.loads(json_path.read_text()), command="make integration")
    print()
    print(block)
    if options.write_docs:
        write_docs(block)
        print(f"\nwrote the results into {DOCS.relative_to(REPO)}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
