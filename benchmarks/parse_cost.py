"""
DAG-parse cost: what importing the provider's sensor and operator modules adds on top of ``airflow.sdk``.

Each sample is a fresh interpreter running
``python -X importtime -c "import airflow.sdk; import <modules>"``; the figure is the sum of the
cumulative import times of the top-level imports that come after ``airflow.sdk`` (so it holds
everything those modules pull in that ``airflow.sdk`` had not). The median of ``--repeats``
processes per side; project and anchor alternate so that machine noise hits both alike.

Also reported: which heavy modules (pydantic models, requests, httpx, aiohttp, SQL hooks, the
sandbox) got imported, for each side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import REPO, airflow_home, emit

PROJECT = ("airflow_provider_quota.sensors.sonarly", "airflow_provider_quota.operators.indeed")
ANCHOR = ("airflow.providers.http.sensors.http",)
HEAVY = (
    "pydantic",
    "airflow_provider_quota.models",
    "requests",
    "httpx",
    "aiohttp",
    "tenacity",
    "airflow.providers.common.sql.hooks.sql",
    "airflow_provider_quota.sandbox",
    "fastapi",
)


def one_sample(modules: tuple[str, ...]) -> tuple[float, list[str]]:
    """Milliseconds ``modules`` add on top of ``airflow.sdk`` in a fresh process, and heavy modules newly loaded."""
    code = (
        "import sys; import airflow.sdk; before = set(sys.modules); "
        + "; ".join(f"import {module}" for module in modules)
        + f"; print(sorted(m for m in set(sys.modules) - before if m in {HEAVY!r}))"
    )
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    total_us = 0
    after_sdk = False
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if name.startswith("  "):  # nested: already counted in its top-level parent
            continue
        name = name.strip()
        if name == "airflow.sdk":
            after_sdk = True
            continue
        if after_sdk:
            total_us += int(cumulative)
    heavy = eval(completed.stdout.strip().splitlines()[-1])  # noqa: S307 (our own list literal)
    return total_us / 1000, heavy


def main(repeats: int) -> dict[str, Any]:
    one_sample(PROJECT)  # warm the file system cache and the .pyc files for both sides
    one_sample(ANCHOR)
    samples: dict[str, list[float]] = {"project": [], "anchor": []}
    heavy: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, modules in (("project", PROJECT), ("anchor", ANCHOR)):
            milliseconds, loaded = one_sample(modules)
            samples[name].append(milliseconds)
            heavy[name] = loaded
    return {
        name: {
            "modules": list(PROJECT if name == "project" else ANCHOR),
            "median_ms": statistics.median(values),
            "samples_ms": values,
            "heavy_modules": heavy[name],
        }
        for name, values in samples.items()
    }


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    airflow_home()
    emit(main(args.repeats))


if __name__ == "__main__":
    cli()
