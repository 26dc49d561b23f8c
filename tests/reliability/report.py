"""
Run the reliability suite and print the figures of that run.

``python -m tests.reliability.report`` (what ``make reliability`` runs) runs ``tests/reliability``
at full size (``QUOTA_RELIABILITY_FULL=1``), has its conftest write per-test figures to a JSON
file, and prints one table: faults injected by kind, requests sent, tasks that ended as expected,
rows lost and duplicated, secrets found. It exits non-zero when a test failed or when any of rows
lost, rows duplicated or secrets found is not 0.

Options: ``--write-docs`` rewrites the figures block of ``docs/reliability.md``; ``--fast`` runs
the variant ``make test`` runs; ``--from-json PATH`` prints the figures of an earlier run without
running anything; arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.generated_blocks import replace_block, split_pytest_args

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "reliability.md"
DEFAULT_JSON = REPO / ".reliability" / "figures.json"
START_MARK = "<!-- reliability-figures:start -->"
END_MARK = "<!-- reliability-figures:end -->"
SECTION_ORDER = [
    "transport faults",
    "data faults",
    "bad input from DAG authors",
    "secrets and transport security",
    "warehouse integrity",
    "hostile input",
    "load",
]


def run_suite(json_path: Path, *, full: bool, pytest_args: list[str]) -> tuple[int, float]:
    """Run the suite in a child process; return its exit status and wall time in seconds."""
    env = dict(os.environ)
    env["QUOTA_RELIABILITY_FIGURES"] = str(json_path)
    env["QUOTA_RELIABILITY_FULL"] = "1" if full else "0"
    if json_path.exists():
        json_path.unlink()
    command = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider", *pytest_args]
    started = time.monotonic()
    status = subprocess.call(command, cwd=REPO, env=env)
    return status, time.monotonic() - started


def machine() -> dict[str, str]:
    try:
        from importlib.metadata import version

        airflow = version("apache-airflow")
    except Exception:
        airflow = "unknown"
    return {
        "nproc": str(os.cpu_count()),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "airflow": airflow,
        "os": f"{platform.system()} {platform.release()}",
    }


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Totals per section and overall, faults by kind, and the verdict."""
    sections: dict[str, Counter[str]] = defaultdict(Counter)
    faults: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for test in data["tests"]:
        row = sections[test["section"]]
        row["tests"] += 1
        row["failed"] += test["outcome"] == "failed"
        row["faults"] += sum(test["faults"].values())
        for name in ("requests", "tasks", "tasks_as_expected", "rows_checked", "rows_lost", "rows_duplicated"):
            row[name] += test[name]
        row["tokens_issued"] += test["tokens_issued"]
        faults.update(test["faults"])
        outcomes[test["outcome"]] += 1
    total: Counter[str] = Counter()
    for row in sections.values():
        total.update(row)
    scan = data["scan"]
    ok = (
        data["exitstatus"] == 0
        and total["failed"] == 0
        and total["rows_lost"] == 0
        and total["rows_duplicated"] == 0
        and total["tasks_as_expected"] == total["tasks"]
        and scan["secrets_found"] == 0
    )
    return {"sections": sections, "total": total, "faults": faults, "outcomes": outcomes, "ok": ok}


def render(data: dict[str, Any], info: dict[str, str], *, command: str, wall_seconds: float | None) -> str:
    """The figures as Markdown tables (readable as plain text too)."""
    summary = summarize(data)
    sections, total, faults, scan = summary["sections"], summary["total"], summary["faults"], data["scan"]
    order = [name for name in SECTION_ORDER if name in sections] + sorted(set(sections) - set(SECTION_ORDER))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    duration = wall_seconds if wall_seconds is not None else data.get("duration_seconds", 0.0)
    lines = [
        f"Command: `{command}, {when}, {duration:.0f} s.",
        f"Machine: {info['nproc']} CPU(s) (`nproc`), {info['arch']} (`uname -m`), {info['os']}, "
        f"Python {info['python']}, Airflow {info['airflow']}.",
        "",
        "| section | tests | faults injected | requests sent | tasks ended as expected "
        "| rows checked | rows lost | rows duplicated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in [*order, "total"]:  # every section, so the total adds up
        row = total if name == "total" else sections[name]
        label = f"**{name}**" if name == "total" else name
        lines.append(
            f"| {label} | {row['tests']} | {row['faults']} | {row['requests']} | "
            f"{row['tasks_as_expected']} of {row['tasks']} | {row['rows_checked']} | {row['rows_lost']} | "
            f"{row['rows_duplicated']} |"
        )
    lines += ["", "| fault injected | count |", "|---|---:|"]
    lines += [f"| {kind} | {count} |" for kind, count in sorted(faults.items(), key=lambda item: (-item[1], item[0]))]
    channels = ", ".join(
        f"{channel} {size / 1e6:.2f} MB" if size >= 1e5 else f"{channel} {size / 1e3:.1f} kB"
        for channel, size in sorted(scan["characters_scanned"].items(), key=lambda item: -item[1])
    )
    canaries = scan["canary_hits_by_channel"]
    seen = sorted(channel for channel, hits in canaries.items() if hits)
    lines += [
        "",
        "| secrets | value |",
        "|---|---:|",
        f"| secrets searched (API key, client secret, test credentials, access tokens) | {scan['secrets_searched']} |",
        f"| of which access tokens the sandbox issued | {scan['access_tokens_searched']} |",
        f"| access tokens issued to the tasks | {total['tokens_issued']} |",
        f"| characters scanned | {sum(scan['characters_scanned'].values())} |",
        f"| **secrets found** | **{scan['secrets_found']}** |",
        "",
        f"Scanned: {channels}. The planted canary was found in: {', '.join(seen) or 'none (no scan test ran)'}.",
        "",
        f"Tests: {summary['outcomes'].get('passed', 0)} passed, {summary['outcomes'].get('failed', 0)} failed, "
        f"{summary['outcomes'].get('skipped', 0)} skipped. Verdict: {'PASS' if summary['ok'] else 'FAIL'}.",
    ]
    return "\n".join(lines)


def write_docs(block: str) -> None:
    replace_block(DOCS, START_MARK, END_MARK, block)


def main(argv: list[str] | None = None) -> int:
    args, pytest_args = split_pytest_args(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the figures block of {DOCS.name}")
    parser.add_argument("--fast", action="store_true", help="run the fast variant (the one make test runs)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the figures are written")
    parser.add_argument("--from-json", type=Path, help="print the figures of an earlier run; run nothing")
    options = parser.parse_args(args)
    wall_seconds: float | None = None
    status = 0
    if options.from_json:
        json_path = options.from_json
    else:
        json_path = options.json
        status, wall_seconds = run_suite(json_path, full=not options.fast, pytest_args=pytest_args)
    if not json_path.exists():
        print(f"no figures in {json_path}: the suite did not run to its end (pytest exit status {status})")
        return status or 1
    data = json.loads(json_path.read_text())
    if data["full"]:
        command = "make reliability` (`python -m tests.reliability.report`)"
    else:
        command = "python -m tests.reliability.report --fast` (the variant `make test` runs)"
    block = render(data, machine(), command=command, wall_seconds=wall_seconds)
    print()
    print(block)
    if options.write_docs:
        write_docs(block)
        print(f"\nwrote the figures into {DOCS.relative_to(REPO)}")
    return 0 if summarize(data)["ok"] and status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
